"""Fixtures of the sidecar core tests: the scripted OpenAI-protocol engine (the real tiny
`transformers serve` engine is the suite-wide `tiny_engine` fixture). Helpers live in sidecar_helpers.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sidecar_helpers import FakeEngine


@pytest.fixture
async def fake_engine() -> AsyncIterator[FakeEngine]:
    engine = FakeEngine()
    await engine.start()
    yield engine
    await engine.stop()
