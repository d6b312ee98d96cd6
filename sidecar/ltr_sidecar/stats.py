"""Pure statistics shared by every part: Kendall's τ-b (O(n log n), Knight's algorithm), Spearman's ρ and
percentiles."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence


def _count_inversions(values: list[float]) -> int:
    """Number of pairs i < j with values[i] > values[j] (merge sort)."""
    n = len(values)
    buf = list(values)
    tmp = [0.0] * n
    inv = 0
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i, j, k = lo, mid, lo
            while i < mid and j < hi:
                if buf[j] < buf[i]:
                    tmp[k] = buf[j]
                    inv += mid - i
                    j += 1
                else:
                    tmp[k] = buf[i]
                    i += 1
                k += 1
            while i < mid:
                tmp[k] = buf[i]
                i += 1
                k += 1
            while j < hi:
                tmp[k] = buf[j]
                j += 1
                k += 1
        buf, tmp = tmp, buf
        width *= 2
    return inv


def _tied_pairs(sorted_values: Sequence[object]) -> int:
    """Tied pairs in a sorted sequence: the sum of C(run, 2) over its runs of equal values."""
    total = 0
    run = 1
    for a, b in itertools.pairwise(sorted_values):
        if a == b:
            run += 1
        else:
            total += run * (run - 1) // 2
            run = 1
    return total + run * (run - 1) // 2


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b between two equally long sequences (ties handled as in τ-b).

    Returns NaN when either sequence is constant or has fewer than two items; raises ValueError on
    unequal lengths or NaN values."""
    if len(x) != len(y):
        raise ValueError(f"kendall_tau_b: sequences differ in length ({len(x)} vs {len(y)})")
    n = len(x)
    xs = [float(v) for v in x]
    ys = [float(v) for v in y]
    if any(math.isnan(v) for v in xs) or any(math.isnan(v) for v in ys):
        raise ValueError("kendall_tau_b: NaN values")
    if n < 2:
        return float("nan")
    pairs = sorted(zip(xs, ys, strict=True))
    n0 = n * (n - 1) // 2
    n1 = _tied_pairs([p[0] for p in pairs])  # ties in x
    n3 = _tied_pairs(pairs)  # joint ties (same x and same y)
    swaps = _count_inversions([p[1] for p in pairs])  # pairs sorted by (x, y): ties in x never invert
    n2 = _tied_pairs(sorted(ys))  # ties in y
    denom = math.sqrt((n0 - n1) * (n0 - n2))
    if denom == 0:
        return float("nan")
    concordant_minus_discordant = n0 - n1 - n2 + n3 - 2 * swaps
    return concordant_minus_discordant / denom


def _average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of their positions."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ (Pearson correlation of average ranks); NaN when either side is constant or has
    fewer than two items; ValueError on unequal lengths or NaN values."""
    if len(x) != len(y):
        raise ValueError(f"spearman_rho: sequences differ in length ({len(x)} vs {len(y)})")
    if any(math.isnan(float(v)) for v in (*x, *y)):
        raise ValueError("spearman_rho: NaN values")
    if len(x) < 2:
        return float("nan")
    rx, ry = _average_ranks([float(v) for v in x]), _average_ranks([float(v) for v in y])
    mean = (len(x) + 1) / 2
    cov = sum((a - mean) * (b - mean) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mean) ** 2 for a in rx)
    vy = sum((b - mean) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx > 0 and vy > 0 else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence: the project's one convention."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
