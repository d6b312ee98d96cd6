"""Trace recording for retraining: rotating JSONL files of (prompt, actual output tokens, ...).

`TraceRecorder.record()` only appends to an in-memory buffer (O(1), no I/O, never raises); a daemon
thread serialises and writes it out every `flush_interval_s`. Files rotate like logrotate:
`traces.jsonl` (being written), `traces.jsonl.1` (newest full one) … `traces.jsonl.{max_files-1}`; the
oldest is deleted, so disk use stays below `max_file_bytes × max_files`. Directories are 0700 and
files 0600 (prompts are private); prompts are recorded only where `record_prompts` is on.

The record schema and the one reader live in `ltr_sidecar.data.traces` (the retrain job reads there).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from pathlib import Path

from ltr_sidecar.data.traces import TRACE_FILE, TraceRecord, trace_line

log = logging.getLogger(__name__)
MIB = 1024 * 1024
DIR_MODE, FILE_MODE = 0o700, 0o600


class TraceRecorder:
    """Buffered, rotating JSONL trace writer with bounded disk use."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        record_prompts: bool = True,
        max_file_bytes: int = 16 * MIB,
        max_files: int = 10,
        flush_interval_s: float = 0.5,
        max_buffered: int = 100_000,
    ) -> None:
        if max_file_bytes < 1024:
            raise ValueError(f"max_file_bytes must be >= 1024, got {max_file_bytes}")
        if max_files < 1:
            raise ValueError(f"max_files must be >= 1, got {max_files}")
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        self.directory = Path(directory)
        self.directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self.directory.chmod(DIR_MODE)  # prompts are private: owner only, whatever the umask
        self.record_prompts = record_prompts
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.flush_interval_s = flush_interval_s
        self.written = 0  # records written to disk
        self.dropped = 0  # records lost: buffer overflow or write errors
        self._buffer: deque[TraceRecord] = deque()
        self._max_buffered = max_buffered
        self._io_lock = threading.Lock()  # one writer at a time (background thread or flush())
        self._wake = threading.Event()
        self._closed = False
        path = self.directory / TRACE_FILE
        self._size = path.stat().st_size if path.exists() else 0
        self._prune()
        self._thread = threading.Thread(target=self._run, name="ltr-trace-writer", daemon=True)
        self._thread.start()

    def record(self, rec: TraceRecord) -> None:
        """Queue one record for writing (cheap; safe from the event loop and from any thread)."""
        if self._closed:
            self.dropped += 1
            return
        if len(self._buffer) >= self._max_buffered:  # disk stalled: keep memory bounded
            self.dropped += 1
            return
        self._buffer.append(rec)

    def flush(self) -> None:
        """Write everything buffered so far (blocking; call off the event loop if latency matters)."""
        with self._io_lock:
            self._drain()

    def close(self) -> None:
        """Flush and stop the writer thread; later records are dropped."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()

    # -- writer side ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval_s)
            try:
                self.flush()
            except Exception:  # never let the writer die: log, count and keep going
                log.exception("trace writer failed")

    def _drain(self) -> None:
        if not self._buffer:
            return
        lines: list[bytes] = []
        while self._buffer:
            rec = self._buffer.popleft()
            try:
                line = trace_line(rec, self.record_prompts).encode("utf-8")
            except (TypeError, ValueError) as exc:
                log.warning(
                    "dropping unserialisable trace record %r: %s", getattr(rec, "request_id", "?"), exc
                )
                self.dropped += 1
                continue
            if len(line) > self.max_file_bytes:  # a huge prompt: keep the record, drop the text
                line = trace_line(rec, record_prompts=False).encode("utf-8")
            lines.append(line)
        try:
            self._write(lines)
        except OSError as exc:
            log.warning("could not write %d trace records to %s: %s", len(lines), self.directory, exc)
            self.dropped += len(lines)

    def _write(self, lines: list[bytes]) -> None:
        path = self.directory / TRACE_FILE
        i = 0
        while i < len(lines):
            chunk: list[bytes] = []
            size = self._size
            # an empty file always takes one line, so an oversized line cannot stall the writer
            while i < len(lines) and (
                size + len(lines[i]) <= self.max_file_bytes or (not chunk and size == 0)
            ):
                chunk.append(lines[i])
                size += len(lines[i])
                i += 1
            if chunk:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
                with os.fdopen(fd, "ab") as fh:
                    fh.write(b"".join(chunk))
                self._size = size
                self.written += len(chunk)
            if i < len(lines):
                self._rotate()

    def _rotate(self) -> None:
        """traces.jsonl → .1 → .2 …; the file that would become .{max_files} is deleted."""
        base = self.directory / TRACE_FILE
        oldest = self.directory / f"{TRACE_FILE}.{self.max_files - 1}"
        if self.max_files == 1:
            base.unlink(missing_ok=True)
        else:
            oldest.unlink(missing_ok=True)
            for n in range(self.max_files - 2, 0, -1):
                src = self.directory / f"{TRACE_FILE}.{n}"
                if src.exists():
                    src.replace(self.directory / f"{TRACE_FILE}.{n + 1}")
            if base.exists():
                base.replace(self.directory / f"{TRACE_FILE}.1")
        self._size = 0

    def _prune(self) -> None:
        """Delete rotated files beyond max_files (left by an earlier, larger configuration)."""
        for path in self.directory.glob(TRACE_FILE + ".*"):
            suffix = path.name[len(TRACE_FILE) + 1 :]
            if suffix.isdigit() and int(suffix) >= self.max_files:
                path.unlink(missing_ok=True)

    def __enter__(self) -> TraceRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
