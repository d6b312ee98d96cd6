"""Sampling parameters: one typed object, one list of keys, one table of bounds.

Both surfaces (gRPC and OpenAI HTTP) build it with `SamplingParams.parse`, which checks every value and
raises `SidecarError(INVALID_ARGUMENT)` naming the field; the engine client serialises it. An instance is
valid by construction, so nothing downstream re-checks it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ltr_sidecar.errors import ErrorCode, SidecarError

MAX_STOP_SEQUENCES = 16
MAX_STOP_CHARS = 256
INT64 = 2**63

#: numeric key → (low, high, integer?, low bound open?)
NUMERIC_BOUNDS: dict[str, tuple[float, float, bool, bool]] = {
    "temperature": (0.0, 100.0, False, False),
    "top_p": (0.0, 1.0, False, True),
    "top_k": (0, 1_000_000, True, False),
    "presence_penalty": (-2.0, 2.0, False, False),
    "frequency_penalty": (-2.0, 2.0, False, False),
    "seed": (-INT64, INT64 - 1, True, False),
}


@dataclass(frozen=True)
class SamplingParams:
    """Engine pass-through parameters; None / empty = the engine's default."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False

    @classmethod
    def parse(cls, values: Mapping[str, Any], prefix: str = "") -> SamplingParams:
        """Validated parameters from a mapping of key → value (None values = not given).

        `prefix` is prepended to field names in error messages (e.g. "sampling." for gRPC)."""
        unknown = sorted(set(values) - set(KEYS))
        if unknown:
            raise _invalid(f"unknown sampling parameter(s) {unknown}; known: {', '.join(KEYS)}")
        out: dict[str, Any] = {}
        for key, (low, high, integer, open_low) in NUMERIC_BOUNDS.items():
            value = values.get(key)
            if value is not None:
                out[key] = _number(prefix + key, value, low, high, integer, open_low)
        stop = values.get("stop")
        if stop is not None:
            out["stop"] = _stop(prefix + "stop", stop)
        ignore_eos = values.get("ignore_eos")
        if ignore_eos is not None:
            if not isinstance(ignore_eos, bool):
                raise _invalid(f"'{prefix}ignore_eos' must be a boolean, got {ignore_eos!r}")
            out["ignore_eos"] = ignore_eos
        return cls(**out)

    def standard_fields(self) -> dict[str, Any]:
        """The OpenAI-standard fields that are set (for the engine request body)."""
        body: dict[str, Any] = {k: getattr(self, k) for k in STANDARD_KEYS if getattr(self, k) is not None}
        if self.stop:
            body["stop"] = list(self.stop)
        return body

    def vendor_fields(self) -> dict[str, Any]:
        """Non-OpenAI fields that are set (vLLM/SGLang extensions; strict engines reject them)."""
        body: dict[str, Any] = {}
        if self.top_k:
            body["top_k"] = self.top_k
        if self.ignore_eos:
            body["ignore_eos"] = True
        return body


KEYS: tuple[str, ...] = tuple(f.name for f in fields(SamplingParams))
STANDARD_KEYS: tuple[str, ...] = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed")


def _invalid(message: str) -> SidecarError:
    return SidecarError(ErrorCode.INVALID_ARGUMENT, message)


def _number(name: str, value: Any, low: float, high: float, integer: bool, open_low: bool) -> float | int:
    kind = "an integer" if integer else "a finite number"
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        raise _invalid(f"'{name}' must be {kind}, got {value!r}"[:200])
    if not integer and not math.isfinite(value):
        raise _invalid(f"'{name}' must be {kind}, got {value!r}")
    if value < low or value > high or (open_low and value == low):
        low_text = f"> {_text(low)}" if open_low else f">= {_text(low)}"
        raise _invalid(f"'{name}' must be {low_text} and <= {_text(high)}, got {value!r}"[:200])
    return int(value) if integer else float(value)


def _text(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else str(bound)


def _stop(name: str, value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(s, str) and s for s in items):
        raise _invalid(f"'{name}' must be a non-empty string or a list of non-empty strings")
    if len(items) > MAX_STOP_SEQUENCES:
        raise _invalid(f"'{name}' allows at most {MAX_STOP_SEQUENCES} sequences, got {len(items)}")
    if any(len(s) > MAX_STOP_CHARS for s in items):
        raise _invalid(f"'{name}' sequences must be at most {MAX_STOP_CHARS} characters each")
    return tuple(items)
