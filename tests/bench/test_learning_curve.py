"""`ltr bench learning-curve`: held-out slice, leave-one-dataset-out cold start, retrain points."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ltr_sidecar.bench.learning_curve import BUNDLED_SEEN, WORKLOADS, hash_order, main, tau_with_ci
from ltr_sidecar.data.datasets import Example
from ltr_sidecar.predictor.runtime.base import PromptLengthPredictor


def test_hash_order_is_deterministic_and_deduplicates():
    ex = [Example(f"p{i % 7}", float(i)) for i in range(20)]
    a, b = hash_order(ex), hash_order(list(reversed(ex)))
    assert [e.prompt for e in a] == [e.prompt for e in b] and len(a) == 7


def test_tau_interval_brackets_the_estimate():
    ex = [Example("x" * (i + 1), float(i + (i % 5) * 3)) for i in range(80)]  # longer prompt, longer answer
    r = tau_with_ci(PromptLengthPredictor(), ex, resamples=100)
    assert r["n_eval"] == 80 and r["lo"] <= r["tau"] <= r["hi"] and r["tau"] > 0.5


def test_only_permissive_workloads_train_the_cold_start():
    shippable = {w.name for w in WORKLOADS if w.shippable}
    assert shippable == {"arena-hard", "gpteacher", "hh-rlhf"} == set(BUNDLED_SEEN)
    assert all(("BY-NC" in w.note) or w.name == "self-instruct" for w in WORKLOADS if not w.shippable)


@pytest.mark.slow
def test_small_run_writes_table_plot_and_json(shared_data: Path, tmp_path: Path, capsys):
    argv = ["--data-root", str(shared_data), "--workloads", "self-instruct", "--sizes", "0,40"]
    argv += ["--families", "fast,fast-classify,auto", "--time-budget", "60"]
    argv += ["--heldout", "60", "--cold-per-workload", "150", "--out", str(tmp_path), "--name", "lc"]
    assert main(argv) == 0
    result = json.loads((tmp_path / "lc.json").read_text())
    (row,) = result["workloads"]
    assert row["heldout"] == 60 and row["pool"] == 252 - 60
    assert {(p["family"], p["mode"], p["n"]) for p in row["points"]} == {
        ("fast", "warm", 40),
        ("fast", "scratch", 40),
        ("fast-classify", "scratch", 40),
        ("auto", "retrain", 40),
    }
    (auto,) = [p for p in row["points"] if p["family"] == "auto"]
    assert auto["start"] in ("fine-tuned", "fresh")  # 40 completions: too few for the encoder
    for point in [row["cold_start"], row["bundled"], *row["points"]]:
        assert -1 <= point["lo"] <= point["tau"] <= point["hi"] <= 1 and point["n_eval"] == 60
    assert all(p["seconds"] > 0 for p in row["points"]) and not row["bundled"]["seen"]
    md = (tmp_path / "lc.md").read_text()
    assert "| self-instruct | fast/warm |" in md and "N=40" in md and f"{auto['start']})" in md
    assert (tmp_path / "lc.png").stat().st_size > 10_000
    assert main(["--workloads", "nope"]) == 2
    assert "no known workload" in capsys.readouterr().err
