"""Consensus length keys from many models' answers to the same prompts (AlpacaEval: 227 models).

Each model's lengths are z-scored in log space over the training prompts only (never test prompts),
then averaged per prompt: a low-noise "how long do answers to this prompt tend to be" label used to
pre-train a ranker before fine-tuning on the target model."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from ltr_sidecar.stats import kendall_tau_b


def zlog(values: dict[str, float], ids: Sequence[str]) -> dict[str, float]:
    """z-scored log(1 + length) over those `ids` present in `values`."""
    xs = {i: math.log1p(values[i]) for i in ids if i in values}
    if len(xs) < 2:
        return {}
    mu = statistics.fmean(xs.values())
    sd = statistics.pstdev(xs.values()) or 1.0
    return {i: (v - mu) / sd for i, v in xs.items()}


def similar_models(
    all_lengths: dict[str, dict[str, float]], target: str, ids: Sequence[str], k: int
) -> list[str]:
    """The `k` models whose lengths rank `ids` most like `target`'s (τ-b on `ids` only)."""
    ref = all_lengths.get(target, {})
    scored = []
    for model, lens in all_lengths.items():
        common = [i for i in ids if i in lens and i in ref]
        if model == target or len(common) < 10:
            continue
        tau = kendall_tau_b([lens[i] for i in common], [ref[i] for i in common])
        if tau == tau:  # not NaN
            scored.append((tau, model))
    return [m for _, m in sorted(scored, reverse=True)[:k]]


def consensus_keys(
    all_lengths: dict[str, dict[str, float]],
    ids: Sequence[str],
    exclude: str | None = None,
    models: Sequence[str] | None = None,
) -> dict[str, float]:
    """Per prompt id: minus the mean over models (all but `exclude`, or only `models`) of z-scored
    log length, computed on `ids` only. Larger key = shorter (the ListMLE target order)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    chosen = set(models) if models is not None else None
    for model, lens in all_lengths.items():
        if model == exclude or (chosen is not None and model not in chosen):
            continue
        for pid, z in zlog(lens, ids).items():
            sums[pid] = sums.get(pid, 0.0) + z
            counts[pid] = counts.get(pid, 0) + 1
    return {pid: -sums[pid] / counts[pid] for pid in sums}
