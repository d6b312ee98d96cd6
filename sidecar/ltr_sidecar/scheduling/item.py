"""The queued request as the queue and its policies see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class QueueItem:
    """One queued request. `payload` is opaque to the queue (the sidecar's request state)."""

    request_id: str
    arrival: float
    score: float = 0.0
    priority: int = 0
    expected_output_tokens: int | None = None
    payload: Any = None
    seq: int = 0
    promoted: bool = False
    removed: bool = field(default=False, repr=False)
    key: tuple[float, ...] = field(default=(), repr=False)
