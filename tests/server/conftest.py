"""Fixtures of the server tests: the scripted OpenAI-protocol engine, a fake core with an HTTP front door
around it (the real tiny `transformers serve` engine is the suite-wide `tiny_engine` fixture)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from ltr_sidecar.server.http_server import build_http_app
from ltr_sidecar.server.listener import bound_port, start_http_server
from ltr_sidecar.server.metrics import SidecarMetrics
from tests.support.fake_core import FakeCore
from tests.support.sidecar import FakeEngine


@pytest.fixture
async def fake_engine() -> AsyncIterator[FakeEngine]:
    engine = FakeEngine()
    await engine.start()
    yield engine
    await engine.stop()


@pytest.fixture
def fake_core() -> FakeCore:
    return FakeCore()


@pytest.fixture
async def http_url(fake_core: FakeCore) -> AsyncIterator[str]:
    """Base URL of the front door around `fake_core`."""
    metrics = SidecarMetrics()
    fake_core.metrics = metrics
    runner = await start_http_server(build_http_app(fake_core, metrics), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s
