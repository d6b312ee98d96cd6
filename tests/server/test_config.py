"""Sidecar config file + CLI flag overrides (the operator writes the file's keys)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ltr_sidecar.server.cli import build_parser, main, overrides_from_args
from ltr_sidecar.server.config import ConfigError, config_duration, load_config


def test_defaults() -> None:
    c = load_config(None, {})
    assert (c.engine_url, c.policy, c.starvation_threshold, c.max_queue, c.max_concurrency) == (
        "http://127.0.0.1:8000",
        "ltr",
        5.0,
        1024,
        "auto",
    )
    assert (c.grpc_port, c.http_port, c.priority_bands, c.scoring_window_ms, c.drain_grace_s) == (
        50051,
        8080,
        [0],
        2.0,
        30.0,
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("500ms", 0.5), ("2m", 120.0), ("1h30m", 5400.0), (3, 3.0), ("0", 0.0), (0.25, 0.25)],
)
def test_durations(text, seconds) -> None:
    """Go durations (the one parser) or a YAML number of seconds."""
    assert config_duration(text, "k") == seconds


@pytest.mark.parametrize("bad", ["5 sec", "-1s", "fast", "3", "7d", True, None, -2])
def test_bad_durations_name_the_key(bad) -> None:
    with pytest.raises(ConfigError, match=r"^drain_grace_s: "):
        config_duration(bad, "drain_grace_s")


def test_yaml_and_json_files_with_flag_overrides(tmp_path: Path) -> None:
    y = tmp_path / "sidecar.yaml"
    y.write_text(
        "engine_url: http://engine:8000\npolicy: fcfs\nstarvation_threshold: 500ms\n"
        "max_concurrency: 16\npriority_bands: [1, 0]\nrecord_prompts: false\nscoring_window_ms: 5\n"
    )
    c = load_config(y, {"policy": "oracle", "max_queue": None})
    assert (c.engine_url, c.policy, c.starvation_threshold, c.max_concurrency) == (
        "http://engine:8000",
        "oracle",
        0.5,
        16,
    )
    assert c.priority_bands == [0, 1] and c.record_prompts is False and c.scoring_window_ms == 5.0
    j = tmp_path / "sidecar.json"
    j.write_text(json.dumps({"max_concurrency": "auto", "scoring_window_ms": "1ms", "trace_dir": "/t"}))
    c = load_config(j, {})
    assert c.auto_concurrency and c.scoring_window_ms == 1.0 and c.trace_dir == "/t"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("polcy: ltr\n", "unknown config key"),
        ("policy: sjf\n", "policy"),
        ("max_queue: 0\n", "max_queue"),
        ("max_concurrency: many\n", "max_concurrency"),
        ("engine_api: grpc\n", "engine_api"),
        ("engine_url: engine:8000\n", "engine_url"),
        ("priority_bands: []\n", "priority_bands"),
        ("grpc_port: 70000\n", "grpc_port"),
        ("record_prompts: maybe\n", "record_prompts"),
        ("- a\n- b\n", "mapping"),
        ("a: [\n", "YAML"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path: Path, content: str, needle: str) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(content)
    with pytest.raises(ConfigError, match=needle):
        load_config(p, {})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/sidecar.yaml", {})


def test_cli_flags_become_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(
        [
            "--engine-url",
            "http://e:1",
            "--max-concurrency",
            "8",
            "--policy",
            "fcfs",
            "--starvation-threshold",
            "2s",
            "--predictor",
            "/p",
            "--grpc-port",
            "1",
        ]
    )
    o = overrides_from_args(args)
    c = load_config(None, o)
    got = (c.engine_url, c.max_concurrency, c.policy, c.starvation_threshold, c.predictor_dir, c.grpc_port)
    assert got == ("http://e:1", 8, "fcfs", 2.0, "/p", 1)
    assert main(["--max-concurrency", "zero"]) == 2
    assert "max_concurrency" in capsys.readouterr().err


def test_cli_port_in_use_exits_1_with_message(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(
            [
                "--engine-url",
                "http://127.0.0.1:9",
                "--grpc-port",
                str(port),
                "--http-port",
                "0",
                "--host",
                "127.0.0.1",
                "--log-level",
                "error",
            ]
        )
    assert code == 1 and f"cannot bind gRPC address 127.0.0.1:{port}" in capsys.readouterr().err
