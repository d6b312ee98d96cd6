"""Fixtures for the benchmark tests: small synthetic workloads (no shared data needed)."""

from __future__ import annotations

import random

import pytest

from ltr_sidecar.data.datasets import Example


@pytest.fixture
def synthetic_examples() -> list[Example]:
    """200 prompts whose true lengths span 10..800 tokens (long-tailed, like chat answers)."""
    rng = random.Random(7)
    return [
        Example(
            prompt=f"prompt {i} " + "word " * rng.randint(3, 60),
            length=float(min(800, max(10, int(rng.lognormvariate(4.8, 0.9))))),
        )
        for i in range(200)
    ]
