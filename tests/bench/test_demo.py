"""`ltr demo --small`: tiny engine + sidecar + shipped sample, FCFS vs LTR, outputs written."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from ltr.cli import main as ltr_main


@pytest.mark.slow
def test_demo_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo-out"
    before = set(Path(tempfile.gettempdir()).glob("ltr-bench-engine-*"))
    assert ltr_main(["demo", "--small", "--out-dir", str(out)]) == 0
    doc = json.loads((out / "demo.json").read_text())
    assert set(doc["policies"]) == {"fcfs", "ltr"}
    assert all(m["failed"] == 0 and m["requests"] == 16 for m in doc["policies"].values())
    assert (out / "demo-cdf.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "| ltr |" in printed and "demo-cdf.png" in printed
    left = set(Path(tempfile.gettempdir()).glob("ltr-bench-engine-*")) - before
    assert not left, f"temporary engine dir left behind: {left}"
