"""The `Predictor` interface, artifact loading by backbone, and the non-learned baselines.

Score convention (the one place it is stated): a HIGHER score means a SHORTER expected output, so
the scheduler serves the highest score first.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from ltr_sidecar.predictor.artifact import PredictorLoadError, read_manifest, write_manifest

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"


@runtime_checkable
class Predictor(Protocol):
    """Anything that ranks prompts by expected output length (higher score = shorter)."""

    version: str
    backbone: str

    def score(self, prompts: Sequence[str]) -> list[float]:
        """One score per prompt, batched."""
        ...


class PromptLengthPredictor:
    """Baseline: a shorter prompt is expected to get a shorter answer (score = -characters)."""

    backbone = "prompt-length"

    def __init__(self, version: str = "prompt-length") -> None:
        self.version = version

    def score(self, prompts: Sequence[str]) -> list[float]:
        return [-float(len(p)) for p in prompts]

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_manifest(d, {"version": self.version, "backbone": self.backbone}, files=[])


class RandomPredictor:
    """Baseline: a random ranking (seeded), i.e. what FCFS-like ignorance of length achieves."""

    backbone = "random"

    def __init__(self, seed: int = 0, version: str = "random") -> None:
        self.version = version
        self._rng = random.Random(seed)

    def score(self, prompts: Sequence[str]) -> list[float]:
        return [self._rng.random() for _ in prompts]


def load_predictor(path: str | Path) -> Predictor:
    """Load a predictor artifact directory, dispatching on its manifest's backbone.

    Raises PredictorLoadError with a clear message for a missing, corrupt or mismatched artifact."""
    manifest = read_manifest(path)
    backbone = manifest["backbone"]
    if backbone == "prompt-length":
        return PromptLengthPredictor(version=str(manifest["version"]))
    if backbone in ("fast", "hf"):
        from ltr_sidecar.predictor.neural import NeuralPredictor

        return NeuralPredictor.load(path, manifest=manifest)
    if backbone == "ensemble":
        from ltr_sidecar.predictor.ensemble import EnsemblePredictor

        return EnsemblePredictor.load(path, manifest)
    raise PredictorLoadError(
        f"{path}: unknown predictor backbone {backbone!r} (known: fast, hf, prompt-length, ensemble)"
    )


def set_scoring_threads(threads: int) -> None:
    """Cap torch's intra-op threads for scoring. One thread is fastest for small batched rankers and
    keeps the sidecar off the cores the engine (and its tokenizer) needs."""
    import torch

    torch.set_num_threads(max(1, int(threads)))


def bundled_predictor_path() -> Path:
    """The small fast-ranker artifact shipped with the package (cold-start default)."""
    return BUNDLED_DIR
