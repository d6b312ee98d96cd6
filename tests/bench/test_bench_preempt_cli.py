"""`ltr bench --engine sim` with preemptive policies, and the preemption study's summary/decision."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ltr.cli import main as ltr_main
from ltr_sidecar.bench.preempt_report import decision, summary_markdown, summary_rows
from ltr_sidecar.predictor.runtime.registry import bundled_predictor_path


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    rng = random.Random(2)
    path = tmp_path / "data.jsonl"
    with path.open("w") as fh:
        for i in range(150):
            words = int(min(900, rng.lognormvariate(4.5, 1.0))) + 1
            topic = "essay story explain" if words > 150 else "yes no name"
            fh.write(
                json.dumps({"prompt": f"q{i} {topic} " + "x " * rng.randint(2, 30), "response_words": words})
                + "\n"
            )
    return path


def test_preemptive_policies_are_simulator_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert ltr_main(["bench", "--engine", "local", "--policies", "ltr,srtf"]) == 2
    assert "simulator only" in capsys.readouterr().err


def test_learned_preemption_needs_training_data_to_calibrate(
    tmp_path: Path, data_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = ltr_main(
        [
            "bench",
            "--engine",
            "sim",
            "--data",
            str(data_file),
            "--policies",
            "ltr,ltr-rerank",
            "--predictor",
            str(bundled_predictor_path()),
            "--rate",
            "50",
            "--out-dir",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "training data" in capsys.readouterr().err


@pytest.mark.slow
def test_sim_preemption_run_reports_costs_calibration_and_ratios(tmp_path: Path, data_file: Path) -> None:
    out = tmp_path / "p.json"
    names = ("ltr", "oracle", "srtf", "ltr-preempt", "ltr-rerank")
    code = ltr_main(
        [
            "bench",
            "--engine",
            "sim",
            "--data",
            str(data_file),
            "--holdout",
            "0.3",
            "--rates",
            "2,150",
            "--duration",
            "20",
            "--policies",
            ",".join(names),
            "--prefix-caching",
            "--calibration-folds",
            "3",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--json",
            str(out),
            "--out-dir",
            str(tmp_path / "res"),
            "--no-plots",
        ]
    )
    assert code == 0
    doc = json.loads(out.read_text())
    assert tuple(doc["policies"]) == names
    assert doc["config"]["prefix_caching"] is True and doc["config"]["preemption"]["margin"] == 0.5
    assert len(doc["config"]["calibration"]["fold_kendall_tau"]) == 3
    assert doc["config"]["calibration"]["remaining_quality"]["by_generated"][0]["generated"] == 0
    low, high = (row["policies"] for row in doc["sweep"])
    assert low["srtf"]["preemptions"] == 0  # no queue, nothing to preempt
    assert high["srtf"]["preemptions"] > 0 and high["srtf"]["recompute_overhead"] > 0
    assert high["srtf"]["ratio_to_srtf"] == 1.0 and high["ltr"]["ratio_to_srtf"] > 1.0
    for metrics in high.values():
        assert metrics["output_tokens"] == high["ltr"]["output_tokens"]  # same tokens, every policy
    assert "preemptions" in (tmp_path / "res" / "sim.md").read_text()


def _doc(ltr: dict[float, float], preempt: dict[float, float]) -> dict:
    def pol(v: float) -> dict[str, float]:
        return {
            "mean_per_token_latency_s": v,
            "max_waiting_time_s": 1.0,
            "preemptions": 3.0,
            "recompute_overhead": 0.01,
        }

    return {
        "sweep": [
            {"rate": r, "policies": {"ltr": pol(ltr[r]), "srtf": pol(0.5), "ltr-preempt": pol(preempt[r])}}
            for r in ltr
        ]
    }


def test_summary_gains_and_the_step_3_rule() -> None:
    docs = {"a": _doc({16.0: 1.0, 32.0: 1.0, 64.0: 2.0}, {16.0: 0.5, 32.0: 0.95, 64.0: 1.8})}
    rows = summary_rows(docs, (16.0, 32.0, 64.0))
    assert [r["rate"] for r in rows] == [16.0, 32.0, 64.0]
    assert rows[2]["ltr-preempt/srtf"] == pytest.approx(3.6) and rows[2]["gain ltr-preempt"] == pytest.approx(
        0.1
    )
    verdict = decision(rows)  # the 50% gain at 16 req/s does not count
    assert verdict["best_gain_ltr_preempt"] == pytest.approx(0.1) and verdict["at"]["rate"] == 64.0
    assert verdict["build_step_3"] is False
    docs["b"] = _doc({32.0: 1.0}, {32.0: 0.8})
    assert decision(summary_rows(docs, (32.0,)))["build_step_3"] is True
    table = summary_markdown(rows, ("config", "rate", "gain ltr-preempt", "preemptions ltr-preempt"))
    assert "| a | 64 | +10.0% | 3 |" in table
