"""Score → expected length calibration: PAV fit, knot cap, manifest round trip and refusal of malformed
entries, loading, the bundled artifact's calibration, `calibrate_artifact` on an ensemble."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import pytest

from ltr_sidecar.data.datasets import Example
from ltr_sidecar.predictor import PredictorLoadError, PromptLengthPredictor, bundled_predictor_path
from ltr_sidecar.predictor import load_predictor as load
from ltr_sidecar.predictor.ops.calibrate import calibrate_artifact
from ltr_sidecar.predictor.runtime.artifact import read_manifest, write_manifest
from ltr_sidecar.predictor.runtime.calibration import (
    MAX_KNOTS_LIMIT,
    Calibration,
    calibration_of,
    fit_calibration,
)
from ltr_sidecar.predictor.runtime.ensemble import EnsemblePredictor


def _non_increasing(values: list[float]) -> bool:
    return all(b <= a + 1e-9 for a, b in itertools.pairwise(values))


def _synthetic(n: int, seed: int = 0) -> tuple[list[float], list[float]]:
    """Scores in [-3, 3]; length = 400·e^(-score/2) plus noise (higher score = shorter)."""
    rng = random.Random(seed)
    scores = [rng.uniform(-3, 3) for _ in range(n)]
    return scores, [max(1.0, 400 * math.exp(-s / 2) + rng.gauss(0, 60)) for s in scores]


def test_fit_is_monotone_bounded_and_capped_on_noisy_data() -> None:
    scores, lengths = _synthetic(2000)
    cal = fit_calibration(scores, lengths, unit="tokens", max_knots=32)
    assert cal.n == 2000 and 2 <= len(cal.xs) <= 32 and cal.unit == "tokens"
    assert list(cal.xs) == sorted(set(cal.xs)) and _non_increasing(list(cal.ys))
    grid = [-5 + i * 0.01 for i in range(1001)]  # beyond the data on both sides
    preds = [cal.expected_tokens(s) for s in grid]
    assert _non_increasing(preds)
    assert all(min(lengths) <= p <= max(lengths) for p in preds)
    # it recovers the trend: within 25% of the noiseless curve in the middle of the range
    for s in (-2.0, -1.0, 0.0, 1.0, 2.0):
        assert cal.expected_tokens(s) == pytest.approx(400 * math.exp(-s / 2), rel=0.25)
    assert cal.expected_tokens(float("nan")) == cal.ys[-1]


def test_pav_exact_on_a_hand_example() -> None:
    # ascending scores 1..5 with lengths 10, 30, 20, 5, 8: (10, 30, 20) pool to 20 at mean score 2,
    # (5, 8) pool to 6.5 at mean score 4.5
    cal = fit_calibration([3, 1, 5, 2, 4], [20, 10, 8, 30, 5])
    assert cal.xs == (2.0, 4.5) and cal.ys == (20.0, 6.5)
    assert cal.expected_tokens(0) == 20.0 and cal.expected_tokens(2.0) == 20.0
    assert cal.expected_tokens(3.0) == pytest.approx(20 - 13.5 / 2.5)  # linear between the knots
    assert cal.expected_tokens(4.5) == 6.5 and cal.expected_tokens(99) == 6.5
    # equal scores are one block; a strictly decreasing sequence is kept as is
    assert fit_calibration([1, 1, 2], [10, 20, 30]).xs == (pytest.approx(4 / 3),)
    assert fit_calibration([0, 1, 2], [9, 5, 1]).ys == (9.0, 5.0, 1.0)


def test_knot_cap_merges_the_closest_blocks() -> None:
    cal = fit_calibration([0, 1, 2, 3, 4], [100, 99, 50, 49, 0], max_knots=3)
    assert cal.xs == (0.5, 2.5, 4.0) and cal.ys == (99.5, 49.5, 0.0)
    assert len(fit_calibration(*_synthetic(500), max_knots=1).xs) == 1


def test_words_convert_to_tokens() -> None:
    cal = fit_calibration([0, 1], [100, 10], unit="words", tokens_per_word=2.0)
    assert cal.expected_length(0) == 100 and cal.expected_tokens(0) == 200
    assert cal.expected_tokens(1) == 20


def test_fit_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2 samples"):
        fit_calibration([1.0], [3.0])
    with pytest.raises(ValueError, match="differ in length"):
        fit_calibration([1.0, 2.0], [3.0])
    with pytest.raises(ValueError, match="finite"):
        fit_calibration([1.0, float("nan")], [3.0, 4.0])
    with pytest.raises(ValueError, match="unknown unit"):
        fit_calibration([1.0, 2.0], [3.0, 4.0], unit="chars")
    with pytest.raises(ValueError, match="max_knots"):
        fit_calibration([1.0, 2.0], [3.0, 4.0], max_knots=0)


def test_round_trip_through_json() -> None:
    cal = fit_calibration(*_synthetic(300), unit="words")
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal


GOOD = {"unit": "tokens", "n": 10, "tokens_per_word": 1.5, "xs": [0.0, 1.0], "ys": [50.0, 5.0]}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"ys": [5.0, 50.0]}, "non-monotone"),
        ({"xs": [1.0, 0.0]}, "strictly increasing"),
        ({"ys": [float("nan"), 5.0]}, "NaN"),
        ({"ys": [50.0]}, "length mismatch"),
        ({"xs": [], "ys": []}, "no knots"),
        ({"xs": list(range(MAX_KNOTS_LIMIT + 1)), "ys": [1.0] * (MAX_KNOTS_LIMIT + 1)}, "too many knots"),
        ({"unit": "chars"}, "unknown unit"),
        ({"xs": "0,1"}, "lists of numbers"),
        ({"ys": [50.0, "5"]}, "must be numbers"),
        ({"ys": [50.0, True]}, "must be numbers"),
        ({"n": 2.5}, "integer"),
        ({"tokens_per_word": 0}, "tokens_per_word"),
        ({"ys": [5.0, -1.0]}, ">= 0"),
    ],
)
def test_malformed_entries_are_refused(change: dict[str, object], fragment: str) -> None:
    with pytest.raises(PredictorLoadError, match=fragment):
        Calibration.from_dict({**GOOD, **change})


def test_not_an_object_is_refused() -> None:
    with pytest.raises(PredictorLoadError, match="JSON object"):
        Calibration.from_dict([1, 2])


def test_a_malformed_calibration_fails_the_load(tmp_path: Path) -> None:
    PromptLengthPredictor("p").save(tmp_path)
    manifest = read_manifest(tmp_path)
    fields = {k: v for k, v in manifest.items() if k not in ("files", "format")}
    write_manifest(tmp_path, {**fields, "calibration": {**GOOD, "ys": [1.0, 2.0]}}, [])
    with pytest.raises(PredictorLoadError, match=r"calibration: non-monotone"):
        load(tmp_path)
    write_manifest(tmp_path, {**fields, "calibration": GOOD}, [])
    assert load(tmp_path).version == "p"


def test_calibration_of_predictors_without_one() -> None:
    assert calibration_of(PromptLengthPredictor()) is None

    class Meta:
        def __init__(self, meta: dict[str, object]) -> None:
            self.meta = meta

    assert calibration_of(Meta({"version": "x"})) is None
    assert calibration_of(Meta({"calibration": GOOD})) == Calibration.from_dict(GOOD)
    with pytest.raises(PredictorLoadError, match="unknown unit"):
        calibration_of(Meta({"calibration": {**GOOD, "unit": "bytes"}}))


def test_the_bundled_artifact_carries_a_calibration() -> None:
    pred = load(bundled_predictor_path())  # offline, from the package
    cal = calibration_of(pred)
    assert cal is not None and cal.unit == "words" and cal.n > 100 and len(cal.xs) <= 64
    prompts = [
        "Write a 2000 word essay on the history of Rome, with sources.",
        "Explain how a transformer language model works.",
        "What is 2 + 2? Answer with one number.",
    ]
    scores = pred.score(prompts)
    tokens = [cal.expected_tokens(s) for s in scores]
    by_score = [t for _, t in sorted(zip(scores, tokens, strict=True))]
    assert _non_increasing(by_score) and all(t > 0 for t in tokens)
    assert tokens[0] > tokens[2]  # the essay is expected longer than the one-number answer


def test_calibrate_an_ensemble_artifact(tmp_path: Path) -> None:
    examples = [Example(prompt="x" * n, length=float(n * 3)) for n in range(1, 60)]  # longer → longer
    members = [PromptLengthPredictor("a"), PromptLengthPredictor("b")]
    EnsemblePredictor.fit(members, [e.prompt for e in examples], version="ens").save(tmp_path)
    assert calibration_of(load(tmp_path)) is None
    report = calibrate_artifact(tmp_path, examples, unit="tokens", max_knots=16)
    assert report.calibration.n == 59 and len(report.calibration.xs) == 16
    assert report.spearman > 0.99 and report.mae < report.mae_median_baseline
    loaded = load(tmp_path)
    cal = calibration_of(loaded)
    assert cal == report.calibration
    assert cal.expected_tokens(loaded.score(["x" * 50])[0]) > cal.expected_tokens(loaded.score(["x"])[0])
