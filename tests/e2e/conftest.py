"""Fixtures of the closed-loop tests: the shipped permissive sample (package data) with replay
lengths, and a predictor store holding a deliberately weak starting version."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from ltr.cli import main as ltr_main
from ltr_sidecar.data.datasets import SAMPLE_HELDOUT, SAMPLE_TRAIN
from ltr_sidecar.predictor.runtime.store import PredictorStore
from tests.support.loop import FAST_CPU, read_sample

WEAK_VERSION = "v1"
WEAK_TRAIN_ROWS = 300


@pytest.fixture(scope="module")
def sample_rows() -> dict[str, list[dict[str, Any]]]:
    """{'train': [...], 'heldout': [...]} from the shipped sample (never the CC BY-NC shared sets)."""
    return {"train": read_sample(SAMPLE_TRAIN), "heldout": read_sample(SAMPLE_HELDOUT)}


@pytest.fixture
def weak_store(tmp_path: Path, sample_rows: dict[str, list[dict[str, Any]]]) -> PredictorStore:
    """A store whose only version, v1, is a fast ranker trained on SHUFFLED lengths (τ≈0 by design),
    trained by the real `ltr predictor train` CLI and published with the store's atomic publish."""
    rows = sample_rows["train"][:WEAK_TRAIN_ROWS]
    lengths = [r["max_tokens"] for r in rows]
    random.Random(0).shuffle(lengths)
    data = tmp_path / "shuffled.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": r["prompt"], "output_tokens": n}) + "\n"
            for r, n in zip(rows, lengths, strict=True)
        ),
        encoding="utf-8",
    )
    art = tmp_path / "weak-artifact"
    code = ltr_main(
        [
            "predictor",
            "train",
            "--data",
            str(data),
            *["--epochs", "3"],
            *FAST_CPU,
            "--out",
            str(art),
            "--version",
            WEAK_VERSION,
            "--quiet",
        ]
    )
    assert code == 0, "training the weak starting predictor failed"
    store = PredictorStore(tmp_path / "store")
    store.publish(art, WEAK_VERSION)
    return store
