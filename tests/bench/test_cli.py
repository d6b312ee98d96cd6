"""`ltr bench` command line: the --json contract, errors, dispatch."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ltr.cli import main as ltr_main
from ltr_sidecar.bench.cli import main as bench_main
from ltr_sidecar.bench.policies import POLICY_NAMES
from ltr_sidecar.predictor.runtime.registry import bundled_predictor_path

CONTRACT_KEYS = (
    "mean_per_token_latency_s",
    "p90_per_token_latency_s",
    "max_waiting_time_s",
    "throughput_tok_s",
)


def check_contract(doc: dict, names: tuple[str, ...]) -> None:
    assert set(doc) >= {"policies", "config"}
    assert isinstance(doc["config"], dict)
    assert tuple(doc["policies"]) == names
    for metrics in doc["policies"].values():
        for key in CONTRACT_KEYS:
            assert isinstance(metrics[key], float) and metrics[key] > 0, key


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    rng = random.Random(1)
    path = tmp_path / "data.jsonl"
    with path.open("w") as fh:
        for i in range(120):
            words = rng.randint(5, 400)
            # longer answers for longer prompts: prompt-length SJF has signal here
            fh.write(json.dumps({"prompt": f"q{i} " + "x " * (words // 4), "response_words": words}) + "\n")
    return path


def test_sim_json_contract_and_report_files(
    tmp_path: Path, data_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    names = ("fcfs", "ltr", "oracle", "prompt-length")
    code = ltr_main(
        [
            "bench",
            "--engine",
            "sim",
            "--data",
            str(data_file),
            "--rates",
            "1,100",
            "--duration",
            "30",
            "--policies",
            ",".join(names),
            "--predictor",
            str(bundled_predictor_path()),
            "--json",
            str(out),
            "--out-dir",
            str(tmp_path / "res"),
        ]
    )
    assert code == 0
    doc = json.loads(out.read_text())
    check_contract(doc, names)
    assert [row["rate"] for row in doc["sweep"]] == [1.0, 100.0]
    low, high = (row["policies"] for row in doc["sweep"])
    assert low["oracle"]["mean_per_token_latency_s"] == pytest.approx(
        low["fcfs"]["mean_per_token_latency_s"], rel=0.02
    )
    assert high["oracle"]["mean_per_token_latency_s"] < 0.7 * high["fcfs"]["mean_per_token_latency_s"]
    assert high["prompt-length"]["mean_per_token_latency_s"] < high["fcfs"]["mean_per_token_latency_s"]
    assert doc["policies"] == high
    for name in ("sim.md", "sim-latency-vs-rate.png", "sim-cdf.png"):
        assert (tmp_path / "res" / name).stat().st_size > 0
    assert "| fcfs |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--policies", "fcfs,sjf"], "unknown policy sjf"),
        (["--data", "/nonexistent/x.jsonl"], "does not exist"),
        (["--engine", "ftp://x", "--data", "{data}", "--policies", "fcfs"], "--engine must be"),
        (["--arrivals", "trace", "--data", "{data}", "--policies", "fcfs"], "--trace"),
    ],
)
def test_bad_input_is_a_clear_error(
    argv: list[str], message: str, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{data}", str(data_file)) for a in argv]
    assert bench_main([*argv, "--out-dir", str(tmp_path), "--requests", "5"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_default_sim_run_from_shipped_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ltr bench --engine sim --json OUT` alone: shipped sample, all policies, rate sweep."""
    monkeypatch.chdir(tmp_path)
    assert bench_main(["--engine", "sim", "--json", "out.json"]) == 0
    doc = json.loads((tmp_path / "out.json").read_text())
    check_contract(doc, POLICY_NAMES)
    top = doc["policies"]
    assert top["ltr"]["mean_per_token_latency_s"] < top["fcfs"]["mean_per_token_latency_s"]
    assert top["oracle"]["mean_per_token_latency_s"] <= top["ltr"]["mean_per_token_latency_s"]
    assert (tmp_path / "benchmarks" / "results" / "sim.md").exists()


def test_predictor_subcommand_dispatches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_main(["predictor", "--help"])
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


@pytest.mark.slow
def test_overhead_subcommand_measures_both_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ltr bench overhead --quick`: real `ltr sidecar` + scripted engine; HTTP and gRPC measured."""
    assert bench_main(["overhead", "--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "sidecar_overhead_quick.json").read_text())
    assert set(result) >= {"ttft", "relay_unpaced", "relay_paced", "environment"}
    for path in ("sidecar_http", "sidecar_grpc"):
        assert path in result["ttft"]
        for relay in ("relay_unpaced", "relay_paced"):
            run = result[relay][path]
            assert run["tokens"] == run["streams"] * run["tokens_per_stream"]  # nothing lost in the relay
            assert run["tokens_per_cpu_s"] > 0
    table = capsys.readouterr().out
    assert "gRPC" in table and "HTTP" in table
