"""`EnsemblePredictor`: a weighted sum of member predictors' standardised scores.

Each member's score is standardised with the mean/std of its scores on the training prompts (fixed at
fit time, so a single request scores the same as in a batch). Artifact: `members/<i>/` holds each
member's own artifact; `predictor.json` lists them with their statistics and weights."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ltr_sidecar.predictor.runtime.artifact import PredictorLoadError, write_manifest
from ltr_sidecar.predictor.runtime.base import Predictor
from ltr_sidecar.predictor.runtime.registry import load_predictor


class EnsemblePredictor:
    """Weighted sum of standardised member scores."""

    backbone = "ensemble"

    def __init__(
        self,
        members: Sequence[Predictor],
        stats: Sequence[tuple[float, float]],
        weights: Sequence[float] | None = None,
        version: str = "ensemble",
        meta: dict[str, Any] | None = None,
    ) -> None:
        if not members or len(stats) != len(members):
            raise ValueError("ensemble needs members and one (mean, std) per member")
        self.members = list(members)
        self.stats = [(float(m), float(s) if s > 0 else 1.0) for m, s in stats]
        self.weights = [float(w) for w in (weights or [1.0] * len(members))]
        if len(self.weights) != len(self.members):
            raise ValueError("one weight per member")
        self.version = version
        self.meta: dict[str, Any] = dict(meta or {})  # manifest fields (e.g. "calibration")

    @classmethod
    def fit(
        cls,
        members: Sequence[Predictor],
        prompts: Sequence[str],
        weights: Sequence[float] | None = None,
        version: str = "ensemble",
    ) -> EnsemblePredictor:
        """Standardisation statistics from the members' scores on (training) prompts."""
        stats = []
        for m in members:
            s = m.score(prompts)
            stats.append((statistics.fmean(s), statistics.pstdev(s)))
        return cls(members, stats, weights, version)

    def score(self, prompts: Sequence[str]) -> list[float]:
        total = [0.0] * len(prompts)
        for m, (mu, sd), w in zip(self.members, self.stats, self.weights, strict=True):
            for i, s in enumerate(m.score(prompts)):
                total[i] += w * (s - mu) / sd
        return total

    def save(self, directory: str | Path) -> dict[str, Any]:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        entries, files = [], []
        for i, m in enumerate(self.members):
            save = getattr(m, "save", None)
            if save is None:
                raise ValueError(f"ensemble member {i} ({m.backbone}) cannot be saved")
            sub = d / "members" / str(i)
            save(sub)
            files += [str(p.relative_to(d)) for p in sorted(sub.rglob("*")) if p.is_file()]
            entries.append(
                {
                    "path": f"members/{i}",
                    "mean": self.stats[i][0],
                    "std": self.stats[i][1],
                    "weight": self.weights[i],
                    "version": m.version,
                    "backbone": m.backbone,
                }
            )
        return write_manifest(
            d, {**self.meta, "version": self.version, "backbone": self.backbone, "members": entries}, files
        )

    @classmethod
    def load(cls, directory: str | Path, manifest: dict[str, Any]) -> EnsemblePredictor:
        d = Path(directory)
        entries = manifest.get("members")
        if not isinstance(entries, list) or not entries:
            raise PredictorLoadError(f"{d}: ensemble manifest lists no members")
        try:
            members = [load_predictor(d / e["path"]) for e in entries]
            stats = [(float(e["mean"]), float(e["std"])) for e in entries]
            weights = [float(e.get("weight", 1.0)) for e in entries]
        except (KeyError, TypeError, ValueError) as exc:
            raise PredictorLoadError(f"{d}: bad ensemble member entry: {exc}") from exc
        meta = {k: v for k, v in manifest.items() if k not in ("files", "format")}
        return cls(members, stats, weights, version=str(manifest["version"]), meta=meta)


def load_ensemble(path: Path, manifest: dict[str, Any]) -> EnsemblePredictor:
    """Registry loader for the `ensemble` backbone."""
    return EnsemblePredictor.load(path, manifest)
