"""Fixtures of the sidecar core tests: the scripted OpenAI-protocol engine and the real tiny
`transformers serve` engine (session-wide, built in seconds). Helpers live in sidecar_helpers.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sidecar_helpers import FakeEngine

from ltr_sidecar.engine.tiny import EngineProcess, build_tiny_model, start_engine


@pytest.fixture
async def fake_engine() -> AsyncIterator[FakeEngine]:
    engine = FakeEngine()
    await engine.start()
    yield engine
    await engine.stop()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir: Path) -> Iterator[EngineProcess]:
    """A real `transformers serve --continuous-batching` on CPU, once per session."""
    engine = start_engine(tiny_model_dir, threads=1)
    yield engine
    engine.stop()
