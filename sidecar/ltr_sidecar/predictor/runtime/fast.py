"""The fast CPU ranker: hashed word/char n-grams -> torch EmbeddingBag (one bag per feature
group) -> small MLP -> score (or class logits for the classification baseline)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ltr_sidecar.predictor.runtime.artifact import PredictorLoadError
from ltr_sidecar.predictor.runtime.bounds import check_fast_config
from ltr_sidecar.predictor.runtime.features import NUM_GROUPS, featurize

WEIGHTS = "weights.safetensors"
FEATURE_VERSION = 2  # bump whenever features.py hashes differently: old artifacts are then refused
DEFAULTS: dict[str, Any] = {"buckets": 1 << 18, "dim": 16, "hidden": 64, "max_chars": 6000}


class FastRanker(nn.Module):
    """EmbeddingBag ranker over hashed n-gram features."""

    kind = "fast"

    def __init__(
        self,
        out_dim: int = 1,
        buckets: int = DEFAULTS["buckets"],
        dim: int = DEFAULTS["dim"],
        hidden: int = DEFAULTS["hidden"],
        max_chars: int = DEFAULTS["max_chars"],
    ) -> None:
        super().__init__()
        for name, value in (("buckets", buckets), ("dim", dim), ("hidden", hidden), ("out_dim", out_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"fast ranker: {name} must be a positive integer, got {value!r}")
        self.buckets, self.dim, self.hidden, self.max_chars, self.out_dim = (
            buckets,
            dim,
            hidden,
            max_chars,
            out_dim,
        )
        self.bag = nn.EmbeddingBag(buckets, dim, mode="mean", sparse=True)  # sparse grads: SparseAdam
        nn.init.normal_(self.bag.weight, std=0.05)
        self.mlp = nn.Sequential(nn.Linear(NUM_GROUPS * dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    @property
    def max_input(self) -> int:
        return self.max_chars

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Parameters with sparse gradients (trained with SparseAdam, no weight decay)."""
        weight = self.bag.weight
        assert isinstance(weight, nn.Parameter)
        return [weight]

    def config(self) -> dict[str, Any]:
        return {
            "buckets": self.buckets,
            "dim": self.dim,
            "hidden": self.hidden,
            "max_chars": self.max_chars,
            "out_dim": self.out_dim,
            "feature_version": FEATURE_VERSION,
        }

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        bags = [b for p in prompts for b in featurize(p, self.buckets, self.max_chars)]
        lengths = np.fromiter((len(b) for b in bags), dtype=np.int64, count=len(bags))
        offsets = np.zeros(len(bags), dtype=np.int64)
        if len(bags) > 1:
            np.cumsum(lengths[:-1], out=offsets[1:])
        ids = np.concatenate(bags) if bags else np.zeros(0, dtype=np.int64)
        return torch.from_numpy(ids), torch.from_numpy(offsets)

    def forward(self, prompts: Sequence[str]) -> torch.Tensor:
        ids, offsets = self.encode(prompts)
        dev = self.bag.weight.device
        pooled = self.bag(ids.to(dev), offsets.to(dev)).view(len(prompts), NUM_GROUPS * self.dim)
        return self.mlp(pooled)

    def save(self, directory: Path) -> list[str]:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(directory / WEIGHTS)
        )
        return [WEIGHTS]

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any]) -> FastRanker:
        if config.get("feature_version") != FEATURE_VERSION:
            raise PredictorLoadError(
                f"{directory}: fast ranker built with feature version {config.get('feature_version')!r}, "
                f"this code hashes features as version {FEATURE_VERSION}: retrain it"
            )
        check_fast_config(directory, config)
        try:
            model = cls(**{k: int(config[k]) for k in ("out_dim", "buckets", "dim", "hidden", "max_chars")})
        except (KeyError, TypeError, ValueError) as exc:
            raise PredictorLoadError(f"{directory}: bad fast-ranker config {config!r}: {exc}") from exc
        try:
            state = load_file(str(directory / WEIGHTS))
            model.load_state_dict(state, strict=True)
        except Exception as exc:  # safetensors raises several types for corrupt files
            raise PredictorLoadError(f"{directory}: cannot load fast-ranker weights: {exc}") from exc
        return model
