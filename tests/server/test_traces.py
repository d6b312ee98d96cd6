"""TraceRecorder / iter_trace_records: fields, rotation, bounded disk, no-prompt mode, corrupt lines."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from ltr_sidecar.data.traces import (
    TRACE_FIELDS,
    TRACE_FILE,
    TraceRecord,
    TraceStats,
    iter_trace_records,
    trace_files,
)
from ltr_sidecar.server.traces import TraceRecorder


def _rec(i: int, prompt: str | None = "write a haiku about queues") -> TraceRecord:
    return TraceRecord(
        timestamp=1_700_000_000.0 + i,
        request_id=f"r{i}",
        prompt=prompt,
        prompt_tokens=7,
        score=0.25 * i,
        output_tokens=10 + i,
        predictor_version="v3",
        model="tiny",
        policy="ltr",
        finish_reason="length",
    )


def test_records_round_trip_with_all_fields(tmp_path: Path) -> None:
    with TraceRecorder(tmp_path) as rec:
        for i in range(5):
            rec.record(_rec(i))
    rows = list(iter_trace_records(tmp_path))
    assert [r["request_id"] for r in rows] == [f"r{i}" for i in range(5)]
    assert set(rows[0]) == set(TRACE_FIELDS)
    assert rows[3]["output_tokens"] == 13 and rows[3]["score"] == 0.75
    assert rows[3]["prompt"].startswith("write")
    assert rec.written == 5 and rec.dropped == 0


def test_background_thread_flushes_without_explicit_flush(tmp_path: Path) -> None:
    rec = TraceRecorder(tmp_path, flush_interval_s=0.05)
    try:
        rec.record(_rec(1))
        deadline = time.monotonic() + 5
        while not (tmp_path / TRACE_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [r["request_id"] for r in iter_trace_records(tmp_path)] == ["r1"]
    finally:
        rec.close()


def test_no_prompt_mode_and_per_request_opt_out(tmp_path: Path) -> None:
    with TraceRecorder(tmp_path / "off", record_prompts=False) as off:
        off.record(_rec(1))
    with TraceRecorder(tmp_path / "on") as on:
        on.record(_rec(2, prompt=None))  # the request said no_trace: the core passes prompt=None
        on.record(_rec(3))
    assert "prompt" not in next(iter_trace_records(tmp_path / "off"))
    rows = list(iter_trace_records(tmp_path / "on"))
    assert "prompt" not in rows[0] and rows[1]["prompt"]
    assert "queues" not in (tmp_path / "off" / TRACE_FILE).read_text()


def test_rotation_bounds_disk_and_keeps_newest(tmp_path: Path) -> None:
    max_file_bytes, max_files = 2048, 3
    rec = TraceRecorder(tmp_path, max_file_bytes=max_file_bytes, max_files=max_files)
    for i in range(400):
        rec.record(_rec(i, prompt="p" * 50))
        if i % 37 == 0:
            rec.flush()
    rec.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [TRACE_FILE, f"{TRACE_FILE}.1", f"{TRACE_FILE}.2"]
    sizes = [p.stat().st_size for p in tmp_path.iterdir()]
    assert all(s <= max_file_bytes for s in sizes)
    assert sum(sizes) <= max_file_bytes * max_files
    ids = [int(r["request_id"][1:]) for r in iter_trace_records(tmp_path)]
    assert ids == sorted(ids) and ids[-1] == 399  # oldest first, newest kept, contiguous tail
    assert ids == list(range(ids[0], 400))
    assert rec.written == 400


def test_restart_appends_and_prunes_files_beyond_max(tmp_path: Path) -> None:
    with TraceRecorder(tmp_path, max_file_bytes=1024, max_files=5) as rec:
        for i in range(60):
            rec.record(_rec(i))
    assert len(trace_files(tmp_path)) == 5
    with TraceRecorder(tmp_path, max_file_bytes=1024, max_files=2) as rec:
        rec.record(_rec(1000))
    assert len(trace_files(tmp_path)) <= 2
    assert list(iter_trace_records(tmp_path))[-1]["request_id"] == "r1000"


def test_huge_prompt_keeps_record_without_text(tmp_path: Path) -> None:
    with TraceRecorder(tmp_path, max_file_bytes=1024) as rec:
        rec.record(_rec(1, prompt="x" * 5000))
        rec.record(_rec(2))
    rows = list(iter_trace_records(tmp_path))
    assert [r["request_id"] for r in rows] == ["r1", "r2"]
    assert "prompt" not in rows[0]


def test_corrupt_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    good = json.dumps({"request_id": "a", "output_tokens": 3, "prompt": "hi"})
    (tmp_path / f"{TRACE_FILE}.1").write_text(good + "\n{not json\n[1, 2]\n")
    (tmp_path / TRACE_FILE).write_text(
        json.dumps({"request_id": "b", "output_tokens": "12"})
        + "\n"  # wrong type
        + json.dumps({"request_id": "c", "output_tokens": 4})
        + "\n\n"
        + '{"request_id": "d", "output_tok'
    )  # cut short by a crash
    stats = TraceStats()
    rows = list(iter_trace_records(tmp_path, stats))
    assert [r["request_id"] for r in rows] == ["a", "c"]
    assert (stats.files, stats.records, stats.corrupt) == (2, 2, 4)


def test_missing_directory_yields_nothing(tmp_path: Path) -> None:
    stats = TraceStats()
    assert list(iter_trace_records(tmp_path / "absent", stats)) == []
    assert stats.files == 0


def test_record_is_cheap_and_thread_safe(tmp_path: Path) -> None:
    rec = TraceRecorder(tmp_path, flush_interval_s=0.01)

    def worker(base: int) -> None:
        for i in range(500):
            rec.record(_rec(base + i))

    threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rec.close()
    ids = {r["request_id"] for r in iter_trace_records(tmp_path)}
    assert len(ids) == 2000 and rec.dropped == 0


def test_bad_arguments_and_write_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_files"):
        TraceRecorder(tmp_path, max_files=0)
    with pytest.raises(ValueError, match="max_file_bytes"):
        TraceRecorder(tmp_path, max_file_bytes=10)
    rec = TraceRecorder(tmp_path / "d")
    (tmp_path / "d" / TRACE_FILE).mkdir()  # writing now fails: counted as dropped, never raised
    rec.record(_rec(1))
    rec.flush()
    rec.close()
    assert rec.dropped == 1
    rec.record(_rec(2))  # after close: dropped, no error
    assert rec.dropped == 2
