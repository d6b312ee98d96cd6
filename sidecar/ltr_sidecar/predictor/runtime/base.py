"""The `Predictor` interface and the non-learned baselines (scores follow `ltr.contract`'s convention)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from ltr_sidecar.predictor.runtime.artifact import write_manifest


@runtime_checkable
class Predictor(Protocol):
    """Anything that ranks prompts by expected output length (a score per prompt, see `ltr.contract`)."""

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


def set_scoring_threads(threads: int) -> None:
    """Cap torch's intra-op threads for scoring. One thread is fastest for small batched rankers and
    keeps the sidecar off the cores the engine (and its tokenizer) needs."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
