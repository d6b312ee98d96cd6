"""Suite-wide fixtures: the shared data folder (tests that need it skip with a reason) and one real
tiny `transformers serve` engine per test session (started lazily, only by tests that ask for it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ltr_sidecar.devtools.tiny_engine import EngineProcess, build_tiny_model, start_engine

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("LTR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip: the CC BY-NC sets are read from there, never copied into the repo."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"shared data folder not present at {SHARED_DATA} (set LTR_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-initialised Llama + BPE tokenizer (EOS unreachable), built in seconds."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir: Path) -> Iterator[EngineProcess]:
    """A real `transformers serve --continuous-batching` on CPU, shared by the whole session."""
    engine = start_engine(tiny_model_dir, threads=1)
    yield engine
    engine.stop()
