"""The `ltr` dispatcher: help lists every part, unknown/unbuilt commands fail clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ltr import cli


def run_ltr(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "ltr.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand() -> None:
    proc = run_ltr("--help")
    assert proc.returncode == 0
    for name in ("predictor", "sidecar", "operator", "bench", "demo"):
        assert name in proc.stdout


def test_no_arguments_prints_help_and_fails() -> None:
    proc = run_ltr()
    assert proc.returncode == 2
    assert "COMMAND" in proc.stdout


def test_unknown_command_is_an_error() -> None:
    proc = run_ltr("frobnicate")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_unbuilt_command_says_not_implemented(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli.COMMANDS, "predictor", ("ltr_sidecar.not_a_module_yet", "x"))
    assert cli.main(["predictor", "train"]) == 2
    assert "not implemented yet" in capsys.readouterr().err


def test_dispatch_passes_remaining_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    class Module:
        @staticmethod
        def main(argv: list[str]) -> int:
            seen.append(argv)
            return 7

    monkeypatch.setitem(cli.COMMANDS, "bench", ("fake_bench_module", "x"))
    monkeypatch.setitem(sys.modules, "fake_bench_module", Module)
    assert cli.main(["bench", "--engine", "sim", "--json", "-"]) == 7
    assert seen == [["--engine", "sim", "--json", "-"]]


def test_missing_dependency_inside_a_module_is_not_hidden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A missing dependency inside a built command must surface, not read as 'not implemented'."""
    (tmp_path / "ltr_fake_broken_cmd.py").write_text("import ltr_dependency_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "demo", ("ltr_fake_broken_cmd", "x"))
    with pytest.raises(ModuleNotFoundError, match="ltr_dependency_that_is_not_installed"):
        cli.main(["demo"])


@pytest.mark.parametrize("name", ["predictor", "sidecar", "operator", "bench", "demo"])
def test_each_subcommand_has_help(name: str) -> None:
    proc = run_ltr(name, "--help")
    # Built commands print their own usage; unbuilt ones must say so and fail.
    if proc.returncode == 0:
        assert "usage" in proc.stdout.lower()
    else:
        assert "not implemented yet" in proc.stderr
