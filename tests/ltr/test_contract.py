"""The shared contract: one duration parser for every duration the CRD accepts, and the names."""

from __future__ import annotations

import functools
import itertools
import re
from pathlib import Path

import pytest
import yaml

from ltr.contract import DURATION_PATTERN, Outcome, format_duration, parse_duration

CRD = Path(__file__).resolve().parents[2] / "crds" / "ltrserving.yaml"
UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@functools.cache
def _crd_duration_patterns() -> frozenset[str]:
    """Every `pattern` of a string field that the CRD documents as a duration."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, str) and "ms|s|m|h" in pattern:
                found.add(pattern)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(yaml.safe_load(CRD.read_text(encoding="utf-8")))
    return frozenset(found)


def test_the_crd_states_the_contracts_grammar() -> None:
    patterns = _crd_duration_patterns()
    assert DURATION_PATTERN in patterns
    assert patterns <= {DURATION_PATTERN, r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"}


def _every_form() -> list[tuple[str, float]]:
    """Every unit alone, integer and fractional, and every ordered pair of units (e.g. 1h30m)."""
    forms = [(f"{n}{u}", n * f) for u, f in UNITS.items() for n in (0, 1, 90, 2.5)]
    forms += [(f"1{a}3{b}", f1 + 3 * f2) for (a, f1), (b, f2) in itertools.permutations(UNITS.items(), 2)]
    forms += [("250ms", 0.25), ("90s", 90.0), ("1h30m", 5400.0), ("24h", 86400.0), ("0", 0.0)]
    return forms


@pytest.mark.parametrize(("text", "seconds"), _every_form())
def test_every_form_the_crd_accepts_parses(text: str, seconds: float) -> None:
    patterns = [re.compile(p) for p in _crd_duration_patterns()]
    assert any(p.match(text) for p in patterns), f"{text!r} is not a CRD duration"
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad", ["", "5", "-1s", "5 s", "1d", "7d", "1w", "s", "1.s", "1h-30m", "fast", "1e3s"]
)
def test_what_the_crd_rejects_the_parser_rejects(bad: str) -> None:
    assert not any(re.compile(p).match(bad) for p in _crd_duration_patterns())
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize("seconds", [0.0, 0.25, 1.0, 90.0, 5400.0, 1e-9, 123.456])
def test_format_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_outcomes_are_the_metric_labels() -> None:
    assert [o.value for o in Outcome] == [
        "ok",
        "error",
        "cancelled",
        "rejected_full",
        "invalid",
        "deadline",
        "unavailable",
    ]
