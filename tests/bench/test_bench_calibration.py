"""Score calibration: isotonic regression, quantile map, mean residual life, the combined model."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from ltr_sidecar.bench.calibration import (
    IsotonicMap,
    QuantileMap,
    ResidualLife,
    fit_length_calibration,
    fold_quantiles,
    isotonic_fit,
)


def test_isotonic_pools_violators_exactly() -> None:
    fit = isotonic_fit([1, 2, 3, 4, 5], [1.0, 3.0, 2.0, 4.0, 4.0])
    # (3, 2) pool to 2.5 at x 2.5; the equal 4s at x 4 and 5 pool at x 4.5
    assert fit == IsotonicMap((1.0, 2.5, 4.5), (1.0, 2.5, 4.0))
    assert fit(0) == 1.0 and fit(9) == 4.0 and fit(3.5) == pytest.approx(3.25)
    dec = isotonic_fit([1, 2, 3], [3.0, 1.0, 2.0], increasing=False)
    assert dec.ys == (3.0, 1.5) and dec(1) > dec(2.5)
    with pytest.raises(ValueError):
        isotonic_fit([], [])


def test_isotonic_monotone_and_within_bounds_on_noisy_data() -> None:
    rng = random.Random(3)
    xs = [rng.random() for _ in range(500)]
    ys = [100 * x + rng.gauss(0, 30) for x in xs]
    fit = isotonic_fit(xs, ys)
    grid = [i / 200 for i in range(201)]
    values = [fit(x) for x in grid]
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert min(ys) <= min(values) and max(values) <= max(ys)
    assert all(a < b for a, b in itertools.pairwise(fit.ys))  # strictly monotone knots
    assert fit(0.8) - fit(0.2) == pytest.approx(60, abs=15)


def test_quantile_map() -> None:
    q = QuantileMap.of([1.0, 2.0, 3.0, 4.0])
    assert q(10.0) == 0.0 and q(0.0) == 1.0  # higher score = shorter = lower quantile
    assert q(2.0) == pytest.approx((2 + 0.5) / 4)
    assert fold_quantiles([5.0, 1.0]) == [0.25, 0.75]


def test_residual_life_exact_and_memoryless_tail() -> None:
    h = ResidualLife.of([1.0, 2.0, 3.0, 10.0], min_support=2)
    assert h(0) == pytest.approx(4.0)  # mean
    assert h(1.5) == pytest.approx((2 + 3 + 10) / 3 - 1.5)
    assert h(2.5) == pytest.approx(6.5 - 2.5)  # values 3, 10: exactly min_support left
    assert h(5.0) == h(50.0) == pytest.approx(6.5 - 2.0)  # constant beyond the supported x (2.0)


def test_length_calibration_monotone_bounded_and_conditional() -> None:
    """Synthetic predictor: score = -log(length) + noise; lengths lognormal."""
    rng = random.Random(5)
    lengths = [max(1.0, rng.lognormvariate(5, 1)) for _ in range(2000)]
    scores = [-math.log(n) + rng.gauss(0, 0.7) for n in lengths]
    cal = fit_length_calibration(fold_quantiles(scores), lengths, scores)
    grid = sorted(scores)[::50]
    totals = [cal.expected_total(s) for s in grid]
    assert all(a >= b for a, b in itertools.pairwise(totals))  # higher score -> shorter
    assert min(lengths) <= min(totals) and max(totals) <= max(lengths)
    assert totals[0] > 5 * totals[-1]  # the score carries real information
    mid = grid[len(grid) // 2]
    remaining = [cal.expected_remaining(mid, g) for g in (0, 100, 300, 1000, 5000)]
    assert all(r >= 1 for r in remaining)
    assert remaining[0] == pytest.approx(cal.expected_total(mid), rel=0.1)
    # long-tailed (lognormal) lengths: far past its expected total, a request is predicted to run on
    # (calibrated total - generated would say 1 token), and more so than early on
    assert remaining[3] > 0.5 * remaining[0] and remaining[3] > remaining[1]
