"""Scheduling policies: each maps a queued item to a sort key (smaller key = served first).

`ltr` serves the highest score first (the score convention is `ltr.contract`'s).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ltr_sidecar.scheduling.item import QueueItem


@dataclass(frozen=True)
class Policy:
    """A named ordering of queued requests within one priority band."""

    name: str
    key: Callable[[QueueItem], tuple[float, ...]]
    uses_predictor: bool
    description: str


def _fcfs_key(item: QueueItem) -> tuple[float, ...]:
    return (item.arrival, item.seq)


def _ltr_key(item: QueueItem) -> tuple[float, ...]:
    return (-item.score, item.arrival, item.seq)


def _oracle_key(item: QueueItem) -> tuple[float, ...]:
    expected = item.expected_output_tokens
    # Requests without a hint go after every hinted one, in arrival order.
    return (float("inf") if expected is None else float(expected), item.arrival, item.seq)


POLICIES: dict[str, Policy] = {
    "fcfs": Policy("fcfs", _fcfs_key, False, "first come, first served"),
    "ltr": Policy("ltr", _ltr_key, True, "highest predictor score (shortest predicted output) first"),
    "oracle": Policy(
        "oracle", _oracle_key, False, "shortest true output first (expected_output_tokens; benchmarks only)"
    ),
}


def get_policy(name: str) -> Policy:
    """Return the policy called `name`; ValueError lists the valid names."""
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; expected one of {sorted(POLICIES)}") from None
