"""Training objectives and label schemes (pure functions).

- ListMLE: the negative Plackett-Luce log-likelihood of the target ordering under the scores.
- Length buckets (paper: 10 tokens): target key = -floor(length / bucket), larger = shorter.
- Classification buckets (S3-like baseline): class = quantile bucket of the length.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import torch


def listmle_loss(
    scores: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """ListMLE for one list: `scores` and `targets` are 1-D, higher target = should rank first.

    Ties in `targets` are broken at random (a random permutation before a stable sort), as in the
    paper's reference code. Returns the mean per-position negative log-likelihood."""
    if scores.ndim != 1 or scores.shape != targets.shape:
        raise ValueError(
            f"listmle_loss: want equal 1-D shapes, got {tuple(scores.shape)} and {tuple(targets.shape)}"
        )
    n = scores.shape[0]
    if n == 0:
        return scores.sum()
    perm = torch.randperm(n, generator=generator, device="cpu").to(scores.device)
    s = scores[perm]
    t = targets[perm]
    order = torch.argsort(t, descending=True, stable=True)
    ordered = s[order]
    # log sum_{k>=i} exp(s_k) for each position i (reverse cumulative logsumexp)
    tail_lse = torch.logcumsumexp(ordered.flip(0), dim=0).flip(0)
    return (tail_lse - ordered).mean()


def plackett_luce_nll(scores: Sequence[float], order: Sequence[int]) -> float:
    """Brute-force reference: -log P(order | scores) under Plackett-Luce (for tests)."""
    remaining = list(order)
    total = 0.0
    for idx in order:
        denom = sum(math.exp(scores[j]) for j in remaining)
        total -= math.log(math.exp(scores[idx]) / denom)
        remaining.remove(idx)
    return total


def bucket_targets(lengths: Sequence[float], bucket: float) -> list[float]:
    """Ranking targets from lengths: -floor(length / bucket) (bucket <= 0: -length). Larger = shorter."""
    if bucket <= 0:
        return [-float(x) for x in lengths]
    return [-float(math.floor(x / bucket)) for x in lengths]


def quantile_boundaries(lengths: Sequence[float], num_classes: int) -> list[float]:
    """Upper boundaries of `num_classes` equal-frequency length buckets (num_classes - 1 values)."""
    if num_classes < 2:
        raise ValueError("num_classes must be >= 2")
    xs = sorted(float(x) for x in lengths)
    if not xs:
        raise ValueError("no lengths to build class boundaries from")
    bounds = [xs[min(len(xs) - 1, (len(xs) * k) // num_classes)] for k in range(1, num_classes)]
    return bounds


def length_class(length: float, boundaries: Sequence[float]) -> int:
    """Class index of a length given upper boundaries (0 = shortest)."""
    return bisect.bisect_left(list(boundaries), float(length))
