"""Bounds an artifact must respect before anything is allocated for it.

A predictor artifact comes from a store that a retrain job writes; a crafted or corrupt one must be
refused with `PredictorLoadError` before its sizes turn into gigabytes of memory (the sidecar's pod
limit is far below what an unchecked config can ask for).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ltr_sidecar.predictor.runtime.artifact import PredictorLoadError

#: fast ranker config key → largest accepted value
FAST_LIMITS = {"buckets": 1 << 22, "dim": 256, "hidden": 4096, "out_dim": 64, "max_chars": 1_000_000}
MAX_FAST_EMBEDDING = 1 << 25  # buckets × dim floats (128 MiB)
#: Hugging Face config.json key → largest accepted value
HF_LIMITS = {
    "hidden_size": 8192,
    "num_hidden_layers": 64,
    "intermediate_size": 32768,
    "vocab_size": 500_000,
    "num_attention_heads": 256,
    "max_position_embeddings": 1_048_576,
}
MAX_HF_TOKENS = 8192


def _bounded(where: str, config: Mapping[str, Any], limits: Mapping[str, int]) -> None:
    for key, high in limits.items():
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise PredictorLoadError(f"{where}: {key}={value!r} is outside 1..{high}")


def check_fast_config(directory: Path, config: Mapping[str, Any]) -> None:
    """A fast-ranker config within FAST_LIMITS (and an embedding table within MAX_FAST_EMBEDDING)."""
    _bounded(f"{directory}: fast ranker", config, FAST_LIMITS)
    table = int(config.get("buckets", 1)) * int(config.get("dim", 1))
    if table > MAX_FAST_EMBEDDING:
        raise PredictorLoadError(
            f"{directory}: fast ranker embedding of {table} floats is above {MAX_FAST_EMBEDDING}"
        )


def check_hf_backbone(directory: Path, max_tokens: object) -> None:
    """The backbone's config.json within HF_LIMITS, and the input length within MAX_HF_TOKENS."""
    if (
        isinstance(max_tokens, bool)
        or not isinstance(max_tokens, int)
        or not 1 <= max_tokens <= MAX_HF_TOKENS
    ):
        raise PredictorLoadError(f"{directory}: max_tokens={max_tokens!r} is outside 1..{MAX_HF_TOKENS}")
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PredictorLoadError(f"{directory}: unreadable backbone config.json: {exc}") from exc
    if not isinstance(config, dict):
        raise PredictorLoadError(f"{path}: must be a JSON object")
    _bounded(f"{directory}: backbone", config, HF_LIMITS)
