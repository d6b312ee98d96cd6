"""Operator helpers: merge-patch logic, pod addresses, the render CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ltr_operator.cli import main as cli_main
from ltr_operator.podprobe import pod_address
from ltr_operator.reconcile import (
    contains,
    removal_patch,
)


def test_contains_and_removal_patch() -> None:
    assert contains({"a": 1, "b": [{"x": 1}]}, {"a": 1, "b": [{"x": 1, "default": 2}], "extra": 3})
    assert not contains({"b": [{"x": 1}]}, {"b": [{"x": 1}, {"x": 2}]})
    assert contains({"env": [], "sel": {}}, {}) and contains({"port": 80}, {"port": "80"})
    assert not contains({"a": {"b": 1}}, {"a": None})
    assert removal_patch({"a": 1, "b": {"c": 1, "d": 2}}, {"b": {"c": 1}}) == {
        "b": {"c": 1, "d": None},
        "a": None,
    }


def test_pod_address() -> None:
    running = {"metadata": {"name": "p"}, "status": {"phase": "Running", "podIP": "10.0.0.7"}}
    assert pod_address(running, 50051) == "10.0.0.7:50051"
    assert pod_address({"status": {"phase": "Running", "podIP": "fd00::1"}}, 1) == "[fd00::1]:1"
    assert pod_address({"status": {"phase": "Pending"}}, 1) is None
    assert pod_address({"metadata": {"deletionTimestamp": "x"}, "status": running["status"]}, 1) is None


def test_cli_render_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "x.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "ltrserving.dev/v1alpha1",
                "kind": "LTRServing",
                "metadata": {"name": "x"},
                "spec": {"model": {"name": "m"}},
            }
        )
    )
    assert (
        cli_main(["render", str(manifest), "--sidecar-image", "s:1", "--default-engine-image", "vllm=v:1"])
        == 0
    )
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Secret", "NetworkPolicy", "Deployment", "Service"]
    assert cli_main(["render", str(manifest)]) == 2
    assert "MissingModelImage" in capsys.readouterr().err
    manifest.write_text("spec: {model: {}}\nmetadata: {name: x}\n")
    assert cli_main(["render", str(manifest), "--sidecar-image", "s"]) == 2
    assert "spec.model.name: required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["--default-engine-image", "nonsense"])
    assert "expected ENGINE=IMAGE" in capsys.readouterr().err
