"""The one trace reader: rotation order, per-pod folders, corrupt lines, prompt-less records, the window."""

from __future__ import annotations

import json

from ltr_sidecar.data.traces import read_traces
from tests.support.predictor import write_jsonl


def test_traces_rotation_corrupt_and_window(tmp_path):
    rows = [
        {
            "timestamp": 100 + i,
            "prompt": f"p{i}",
            "output_tokens": i,
            "score": 0.0,
            "predictor_version": "v1",
            "model": "m",
        }
        for i in range(10)
    ]
    rows[3].pop("prompt")  # prompt recording off
    write_jsonl(tmp_path / "traces.jsonl.1", rows[:5])
    write_jsonl(tmp_path / "traces.jsonl", rows[5:])
    with (tmp_path / "traces.jsonl").open("a") as fh:
        fh.write('{"timestamp": 1, "prom\n')  # cut short by a crash
    (tmp_path / "notes.txt").write_text("ignored")
    ex, stats = read_traces(tmp_path)
    assert [e.prompt for e in ex] == [f"p{i}" for i in range(10) if i != 3]  # sorted by time
    assert (stats.files, stats.corrupt, stats.no_prompt, stats.used) == (2, 1, 1, 9)
    ex, stats = read_traces(tmp_path, since=106)
    assert [e.timestamp for e in ex] == [106, 107, 108, 109] and stats.outside_window == 5
    # A fresh volume no sidecar has written to yet: no traces, not an error (retrain says
    # insufficient_data). Per-pod sub-folders are read too.
    assert read_traces(tmp_path / "nope")[0] == []
    pod = tmp_path / "pod-a"
    pod.mkdir()
    record = {"prompt": "px", "output_tokens": 3, "timestamp": 200}
    (pod / "traces.jsonl").write_text(json.dumps(record) + "\n")
    ex, stats = read_traces(tmp_path)
    assert ex[-1].prompt == "px" and stats.files == 3
