"""Fixtures of the surfaces tests: a fake core and an HTTP front door on 127.0.0.1 around it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from surfaces_fakes import FakeCore

from ltr_sidecar.server.http_server import bound_port, build_http_app, start_http_server
from ltr_sidecar.server.metrics import SidecarMetrics


@pytest.fixture
def fake_core() -> FakeCore:
    return FakeCore()


@pytest.fixture
async def http_url(fake_core: FakeCore) -> AsyncIterator[str]:
    """Base URL of the front door around `fake_core` (its metrics at app state via the core)."""
    metrics = SidecarMetrics()
    fake_core.metrics = metrics  # type: ignore[attr-defined]
    runner = await start_http_server(build_http_app(fake_core, metrics), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s
