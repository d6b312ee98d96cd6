"""`ltr predictor calibrate`: fit an artifact's score → expected length calibration on data and store it
in the artifact's `predictor.json` (key `calibration`), keeping the file checksums valid.

Idempotent: the same artifact and data give the same manifest (its `created` stamp is kept)."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ltr_sidecar.data.datasets import Example
from ltr_sidecar.predictor.runtime.artifact import PredictorLoadError, read_manifest, write_manifest
from ltr_sidecar.predictor.runtime.calibration import DEFAULT_MAX_KNOTS, Calibration, fit_calibration
from ltr_sidecar.predictor.runtime.registry import load_predictor
from ltr_sidecar.stats import spearman_rho

SCORE_BATCH = 256


@dataclass(frozen=True)
class CalibrationReport:
    """What `calibrate_artifact` fitted, and how well the calibrated lengths match the actual ones."""

    calibration: Calibration
    version: str
    spearman: float  # calibrated expected length vs actual length
    mae: float  # mean absolute error, in the calibration's unit
    mae_median_baseline: float  # the MAE of always predicting the median length

    def as_dict(self, artifact: str) -> dict[str, object]:
        c = self.calibration
        return {
            "artifact": artifact,
            "version": self.version,
            "unit": c.unit,
            "knots": len(c.xs),
            "n": c.n,
            "spearman": round(self.spearman, 4),
            "mae": round(self.mae, 2),
            "mae_median_baseline": round(self.mae_median_baseline, 2),
            "expected_tokens_min": round(c.expected_tokens(c.xs[-1]), 1),
            "expected_tokens_max": round(c.expected_tokens(c.xs[0]), 1),
        }


def calibrate_artifact(
    directory: str | Path,
    examples: Sequence[Example],
    unit: str = "words",
    max_knots: int = DEFAULT_MAX_KNOTS,
) -> CalibrationReport:
    """Score `examples` with the artifact in `directory`, fit the calibration, rewrite its manifest."""
    d = Path(directory)
    if len(examples) < 2:
        raise ValueError(f"calibration needs at least 2 examples, got {len(examples)}")
    manifest = read_manifest(d)
    fields = {k: v for k, v in manifest.items() if k not in ("files", "format")}
    if "calibration" in fields:
        try:
            Calibration.from_dict(fields["calibration"])
        except PredictorLoadError as exc:  # replace it rather than refuse to load the artifact
            print(f"replacing a malformed calibration ({exc})", file=sys.stderr)
            del fields["calibration"]
            write_manifest(d, fields, manifest["files"])
    predictor = load_predictor(d)
    prompts = [e.prompt for e in examples]
    scores: list[float] = []
    for i in range(0, len(prompts), SCORE_BATCH):
        scores += [float(s) for s in predictor.score(prompts[i : i + SCORE_BATCH])]
    lengths = [float(e.length) for e in examples]
    cal = fit_calibration(scores, lengths, unit=unit, max_knots=max_knots)
    fields["calibration"] = cal.to_dict()
    write_manifest(d, fields, manifest["files"])
    predicted = [cal.expected_length(s) for s in scores]
    median = statistics.median(lengths)
    rho = spearman_rho(predicted, lengths)
    return CalibrationReport(
        calibration=cal,
        version=str(manifest["version"]),
        spearman=0.0 if rho != rho else rho,
        mae=statistics.fmean(abs(p - n) for p, n in zip(predicted, lengths, strict=True)),
        mae_median_baseline=statistics.fmean(abs(median - n) for n in lengths),
    )
