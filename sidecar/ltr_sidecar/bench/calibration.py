"""Score calibration: predictor score -> expected output tokens, and remaining tokens given progress.

Pure functions over (score, true length) pairs of a *training* split; nothing here looks at the
requests being scheduled. Three pieces:

- `isotonic_fit`: pool-adjacent-violators regression, returned as a strictly monotone piecewise
  linear map through the pooled blocks' centres (ties only beyond the outermost centres, where it is
  clamped), so it preserves the predictor's order wherever the data supports an order;
- `QuantileMap`: score -> predicted-length quantile u in [0, 1] against a reference set of scores,
  which makes calibrations fitted on one model's scores usable with another model of the same
  kind (ListMLE scores have an arbitrary shift and scale);
- `ResidualLife`: the mean residual life E[X - x | X > x] of a sample, used on lengths normalised by
  their calibrated expectation (a scale family: "remaining ≈ expected total × h(generated ÷ expected
  total)"); beyond the data's support the tail is taken as memoryless (constant residual).

`LengthCalibration` combines them: `expected_total(score)` and `expected_remaining(score, generated)`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from ltr_sidecar.predictor.runtime.calibration import pool_adjacent_violators


@dataclass(frozen=True)
class IsotonicMap:
    """A monotone piecewise-linear function through `(xs[i], ys[i])`, constant beyond the ends."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def __call__(self, x: float) -> float:
        xs, ys = self.xs, self.ys
        if x <= xs[0]:
            return ys[0]
        if x >= xs[-1]:
            return ys[-1]
        i = bisect.bisect_right(xs, x)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def isotonic_fit(x: Sequence[float], y: Sequence[float], increasing: bool = True) -> IsotonicMap:
    """Least-squares monotone fit of y on x (pool adjacent violators), as an `IsotonicMap`.

    Each pooled block becomes one knot at its mean x with its mean y; equal x values are pooled first,
    so the knots' xs are strictly increasing and (for ≥ 2 blocks) their ys strictly monotone.
    """
    if len(x) != len(y) or not x:
        raise ValueError("isotonic_fit needs equally long, non-empty x and y")
    sign = -1.0 if increasing else 1.0  # the shared PAV fits non-increasing: negate y for an increasing fit
    blocks = pool_adjacent_violators(sorted((float(a), sign * float(b)) for a, b in zip(x, y, strict=True)))
    return IsotonicMap(tuple(sx / n for sx, _, n in blocks), tuple(sign * sy / n for _, sy, n in blocks))


@dataclass(frozen=True)
class QuantileMap:
    """Score -> u = fraction of reference scores above it (0: shortest predicted, 1: longest)."""

    reference: tuple[float, ...]  # sorted ascending

    @classmethod
    def of(cls, scores: Sequence[float]) -> QuantileMap:
        if not scores:
            raise ValueError("QuantileMap needs reference scores")
        return cls(tuple(sorted(scores)))

    def __call__(self, score: float) -> float:
        ref = self.reference
        above = len(ref) - bisect.bisect_right(ref, score)
        ties = bisect.bisect_right(ref, score) - bisect.bisect_left(ref, score)
        return (above + 0.5 * ties) / len(ref)


def fold_quantiles(scores: Sequence[float]) -> list[float]:
    """Each score's `QuantileMap` value against its own list (cross-fitted folds use this per fold)."""
    qmap = QuantileMap.of(scores)
    return [qmap(s) for s in scores]


@dataclass(frozen=True)
class ResidualLife:
    """Mean residual life h(x) = E[X - x | X > x] of a sample, memoryless beyond `min_support`."""

    values: tuple[float, ...]  # sorted ascending
    suffix: tuple[float, ...]  # suffix[i] = sum(values[i:])
    min_support: int

    @classmethod
    def of(cls, sample: Sequence[float], min_support: int = 20) -> ResidualLife:
        if not sample:
            raise ValueError("ResidualLife needs a non-empty sample")
        values = tuple(sorted(sample))
        suffix = [0.0] * (len(values) + 1)
        for i in range(len(values) - 1, -1, -1):
            suffix[i] = suffix[i + 1] + values[i]
        return cls(values, tuple(suffix), max(1, min(min_support, len(values))))

    def __call__(self, x: float) -> float:
        n = len(self.values)
        i = bisect.bisect_right(self.values, x)
        if n - i < self.min_support:  # too few samples left: constant residual from the last supported x
            i = n - self.min_support
            x = min(x, self.values[i - 1]) if i > 0 else min(x, 0.0)
        return self.suffix[i] / (n - i) - x


@dataclass(frozen=True)
class LengthCalibration:
    """Score -> expected total / remaining output tokens, fitted on (quantile, length) pairs."""

    quantile: QuantileMap
    total: IsotonicMap  # u -> E[L | u], non-decreasing
    residual: ResidualLife  # of L / E[L | u]

    def expected_total(self, score: float) -> float:
        return max(1.0, self.total(self.quantile(score)))

    def expected_remaining(self, score: float, generated: int) -> float:
        """E[L - g | L > g, score] under the scale-family model (≥ 1 token)."""
        m = self.expected_total(score)
        return max(1.0, m * self.residual(generated / m))


def fit_length_calibration(
    quantiles: Sequence[float],
    lengths: Sequence[float],
    reference_scores: Sequence[float],
    min_support: int = 20,
) -> LengthCalibration:
    """Calibrate from cross-fitted (quantile u, true length) pairs; `reference_scores` are the serving
    predictor's scores on the training prompts (they place a new score on the u axis)."""
    total = isotonic_fit(quantiles, lengths, increasing=True)
    normalised = [length / max(1.0, total(u)) for u, length in zip(quantiles, lengths, strict=True)]
    return LengthCalibration(
        QuantileMap.of(reference_scores), total, ResidualLife.of(normalised, min_support)
    )
