"""`ltr bench scoring`: the scorer under Poisson load, on the shipped data and bundled predictor."""

from __future__ import annotations

import json

from ltr_sidecar.bench.scoring_load import arrivals, main


def test_poisson_arrivals_have_the_rate_and_stay_in_the_window():
    times = arrivals(50.0, 20.0, seed=1)
    assert 900 < len(times) < 1100 and times == sorted(times) and times[0] > 0 and times[-1] < 20.0


def test_small_run_scores_every_arrival(tmp_path, capsys):
    assert main(["--rate", "40", "--duration", "1", "--out", str(tmp_path), "--name", "s"]) == 0
    result = json.loads((tmp_path / "s.json").read_text())
    (row,) = result["predictors"].values()
    assert row["requests"] == len(arrivals(40.0, 1.0, 0)) and row["mean_batch"] >= 1
    assert (
        0 < row["arrival_to_score_ms_p50"] <= row["arrival_to_score_ms_p99"] <= row["arrival_to_score_ms_max"]
    )
    assert "| bundled-v1 (fast) |" in (tmp_path / "s.md").read_text()
    assert main(["--rate", "0"]) == 2
