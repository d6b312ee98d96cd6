"""Kendall τ-b against known values and brute force; ListMLE against a brute-force Plackett-Luce."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from ltr_sidecar.predictor.runtime.neural import expected_class_score
from ltr_sidecar.predictor.training.losses import (
    bucket_targets,
    length_class,
    listmle_loss,
    plackett_luce_nll,
    quantile_boundaries,
)
from ltr_sidecar.stats import kendall_tau_b


def brute_tau_b(x, y):
    c = d = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        a = (x[i] > x[j]) - (x[i] < x[j])
        b = (y[i] > y[j]) - (y[i] < y[j])
        if a * b > 0:
            c += 1
        elif a * b < 0:
            d += 1
        elif a == 0 and b != 0:
            tx += 1
        elif b == 0 and a != 0:
            ty += 1
    return (c - d) / math.sqrt((c + d + tx) * (c + d + ty))


def test_tau_known_values():
    assert kendall_tau_b([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert kendall_tau_b([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    # 10 pairs, 6 concordant, 4 discordant
    assert kendall_tau_b([1, 2, 3, 4, 5], [3, 4, 1, 2, 5]) == pytest.approx(0.2)
    # SciPy's documented τ-b example (with ties): -0.47140452079103173
    assert kendall_tau_b([12, 2, 1, 12, 2], [1, 4, 7, 1, 0]) == pytest.approx(-0.47140452079103173)


def test_tau_matches_brute_force_with_ties():
    rng = random.Random(1)
    checked = 0
    while checked < 200:
        n = rng.randint(2, 40)
        x = [rng.randint(0, 6) for _ in range(n)]
        y = [rng.randint(0, 6) for _ in range(n)]
        if len(set(x)) < 2 or len(set(y)) < 2:
            continue
        assert kendall_tau_b(x, y) == pytest.approx(brute_tau_b(x, y), abs=1e-12)
        checked += 1


def test_tau_edge_cases():
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))
    assert math.isnan(kendall_tau_b([1], [2]))
    with pytest.raises(ValueError, match="differ in length"):
        kendall_tau_b([1, 2], [1])
    with pytest.raises(ValueError, match="NaN"):
        kendall_tau_b([1, float("nan")], [1, 2])


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_listmle_equals_plackett_luce(n):
    gen = torch.Generator().manual_seed(n)
    scores = torch.randn(n, generator=gen, dtype=torch.float64)
    targets = torch.randperm(n, generator=gen).double()  # distinct: one target order
    order = sorted(range(n), key=lambda i: -targets[i].item())
    expected = plackett_luce_nll(scores.tolist(), order) / n
    assert listmle_loss(scores, targets).item() == pytest.approx(expected, rel=1e-9)


def test_plackett_luce_probabilities_sum_to_one():
    scores = [0.3, -1.2, 2.0, 0.0]
    total = sum(math.exp(-plackett_luce_nll(scores, list(p))) for p in itertools.permutations(range(4)))
    assert total == pytest.approx(1.0)


def test_listmle_prefers_correct_order_and_has_gradient():
    targets = torch.tensor([3.0, 2.0, 1.0, 0.0])
    good = torch.tensor([3.0, 2.0, 1.0, 0.0], requires_grad=True)
    bad = torch.tensor([0.0, 1.0, 2.0, 3.0])
    loss = listmle_loss(good, targets)
    assert loss.item() < listmle_loss(bad, targets).item()
    loss.backward()
    assert good.grad is not None and torch.isfinite(good.grad).all()
    with pytest.raises(ValueError):
        listmle_loss(torch.zeros(3), torch.zeros(4))


def test_label_schemes():
    assert bucket_targets([0, 9, 10, 25], 10) == [0.0, 0.0, -1.0, -2.0]
    assert bucket_targets([3, 7], 0) == [-3.0, -7.0]
    bounds = quantile_boundaries(list(range(100)), 4)
    assert bounds == [25.0, 50.0, 75.0]
    assert [length_class(x, bounds) for x in (0, 25, 26, 99)] == [0, 0, 1, 3]
    logits = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, 10.0]])
    s = expected_class_score(logits)
    assert s[0] > s[1]  # mass on the short class = higher score
    with pytest.raises(ValueError):
        quantile_boundaries([1.0], 1)
