"""The sidecar's trace files: the record schema (what the sidecar writes) and the one reader (what the
retrain job and the tests read).

A trace directory holds rotating JSONL logs, one folder per pod: `traces.jsonl` (being written),
`traces.jsonl.1` (newest full one) ... A line is one `TraceRecord`; lines cut short by a crash or
otherwise unusable are skipped and counted, never fatal.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ltr_sidecar.data.datasets import DataError, Example, example_from_record, iter_jsonl

TRACE_FILE = "traces.jsonl"


@dataclass
class TraceRecord:
    """One completed request. `prompt` is None when prompt recording is off for it."""

    timestamp: float
    request_id: str
    prompt: str | None
    prompt_tokens: int
    score: float
    output_tokens: int
    predictor_version: str
    model: str
    policy: str
    finish_reason: str


TRACE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TraceRecord))


def trace_line(rec: TraceRecord, record_prompts: bool = True) -> str:
    """One JSONL line (with the trailing newline); the prompt key is omitted when not recorded."""
    obj = dataclasses.asdict(rec)
    if not record_prompts or rec.prompt is None:
        del obj["prompt"]
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


@dataclass
class TraceStats:
    """What reading a trace directory saw."""

    files: int = 0
    lines: int = 0
    records: int = 0  # usable trace records (before prompt/window filtering)
    corrupt: int = 0  # not a JSON object, or no integer output_tokens
    no_prompt: int = 0
    no_length: int = 0
    outside_window: int = 0
    used: int = 0  # examples returned by read_traces


def trace_files(directory: str | Path) -> list[Path]:
    """Trace files under `directory` and its sub-directories (the sidecar writes one per pod), each
    log oldest first: rotated `NAME.jsonl.N` (highest N first), then `NAME.jsonl`.

    A missing directory holds no traces (a fresh volume no sidecar has written to yet)."""
    root = Path(directory)
    if not root.is_dir():
        return []
    logs: dict[Path, list[tuple[int, Path]]] = {}
    for f in root.rglob("*"):
        if not f.is_file():
            continue
        if f.name.endswith(".jsonl"):
            logs.setdefault(f, []).append((0, f))
            continue
        base, _, suffix = f.name.rpartition(".")
        if base.endswith(".jsonl") and suffix.isdigit():
            logs.setdefault(f.with_name(base), []).append((-int(suffix), f))
    return [f for log in sorted(logs) for _, f in sorted(logs[log])]


def _valid_trace(obj: object) -> bool:
    """A usable trace line: an object with an integer output length (and a string id when it has one)."""
    if not isinstance(obj, dict):
        return False
    rid = obj.get("request_id")
    tokens = obj.get("output_tokens")
    return (
        (rid is None or isinstance(rid, str))
        and isinstance(tokens, int)
        and not isinstance(tokens, bool)
        and tokens >= 0
    )


def iter_trace_records(directory: str | Path, stats: TraceStats | None = None) -> Iterator[dict[str, Any]]:
    """Trace records (dicts) oldest first; unusable lines are skipped and counted in `stats.corrupt`."""
    stats = stats if stats is not None else TraceStats()
    for path in trace_files(directory):
        stats.files += 1
        try:
            for _, obj in iter_jsonl(path, skip_corrupt=True):
                stats.lines += 1
                if obj is None or not _valid_trace(obj):
                    stats.corrupt += 1
                    continue
                stats.records += 1
                yield obj
        except DataError:  # rotated away while we were reading
            continue


def read_traces(
    directory: str | Path, *, since: float | None = None, model_name: str | None = None
) -> tuple[list[Example], TraceStats]:
    """Training examples from a trace directory, sorted by timestamp, and what was skipped.

    Records without a prompt (prompt recording off), without a length, of another model or older than
    `since` (Unix seconds) are counted and left out."""
    stats = TraceStats()
    out: list[Example] = []
    for rec in iter_trace_records(directory, stats):
        if not isinstance(rec.get("prompt"), str):
            stats.no_prompt += 1
            continue
        ex = example_from_record(rec)
        if ex is None:
            stats.no_length += 1
            continue
        if model_name is not None and ex.model not in (None, model_name):
            continue
        if since is not None and (ex.timestamp is None or ex.timestamp < since):
            stats.outside_window += 1
            continue
        out.append(ex)
    out.sort(key=lambda e: e.timestamp if e.timestamp is not None else float("-inf"))
    stats.used = len(out)
    return out, stats
