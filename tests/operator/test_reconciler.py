"""The Reconciler's guarantees: one pass per object at a time, and a pass that hangs is abandoned at its
deadline (logged with the await that hung) so later triggers reconcile the object again; a resync round
reconciles objects concurrently, so a stuck or crashing object holds up no other."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from ltr_operator import handlers
from ltr_operator.config import OperatorConfig
from ltr_operator.kube import KubeClient


class _OneObject(KubeClient):
    """Answers GET of the one LTRServing; no API server behind it (the pass itself is replaced)."""

    def __init__(self) -> None:  # no configuration: nothing here talks to a server
        pass

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return {"metadata": {"namespace": namespace, "name": name}}


async def test_a_hung_pass_is_abandoned_and_the_object_reconciles_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    passes: list[str] = []

    async def reconcile(client: KubeClient, cfg: OperatorConfig, body: dict[str, Any], emit: Any) -> None:
        if not passes:
            passes.append("hung")
            await asyncio.Event().wait()  # an await that never returns
        passes.append("ok")

    monkeypatch.setattr(handlers, "reconcile", reconcile)
    reconciler = handlers.Reconciler(_OneObject(), OperatorConfig(), pass_timeout_s=0.2)
    with caplog.at_level(logging.ERROR, logger="ltr_operator"):
        await asyncio.wait_for(reconciler.run("ns", "m"), 5)
    assert passes == ["hung"] and reconciler.passes == 0
    record = next(r for r in caplog.records if "exceeded" in r.getMessage())
    assert "ns/m exceeded 0.2s" in record.getMessage() and record.exc_info is not None

    await asyncio.wait_for(reconciler.run("ns", "m"), 5)  # the object is not left marked busy
    assert passes == ["hung", "ok"] and reconciler.passes == 1


async def test_a_resync_round_is_not_held_up_by_a_stuck_or_crashing_object(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    release, done = asyncio.Event(), []

    async def reconcile(client: KubeClient, cfg: OperatorConfig, body: dict[str, Any], emit: Any) -> None:
        name = body["metadata"]["name"]
        if name == "a-stuck":
            await release.wait()
        if name == "buggy":
            raise RuntimeError("a bug in one object's pass")
        done.append(name)

    monkeypatch.setattr(handlers, "reconcile", reconcile)
    reconciler = handlers.Reconciler(_OneObject(), OperatorConfig())
    keys = [("ns", n) for n in ("e", "buggy", "c", "d", "a-stuck")]  # run in sorted order: a-stuck first

    async def three_done() -> None:
        while len(done) < 3:
            await asyncio.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="ltr_operator"):
        round_ = asyncio.create_task(handlers.resync_all(reconciler, keys, limit=2))
        await asyncio.wait_for(three_done(), 5)  # c, d and e through one slot while a-stuck holds the other
        assert sorted(done) == ["c", "d", "e"] and not round_.done()
        release.set()
        await asyncio.wait_for(round_, 5)
    assert sorted(done) == ["a-stuck", "c", "d", "e"]
    assert any("ns/buggy crashed" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_an_api_calls_own_timeout_is_not_reported_as_the_pass_deadline(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def reconcile(client: KubeClient, cfg: OperatorConfig, body: dict[str, Any], emit: Any) -> None:
        raise TimeoutError("an API request timed out")  # what aiohttp raises for one slow call

    monkeypatch.setattr(handlers, "reconcile", reconcile)
    reconciler = handlers.Reconciler(_OneObject(), OperatorConfig(), pass_timeout_s=30)
    with (
        caplog.at_level(logging.ERROR, logger="ltr_operator"),
        pytest.raises(TimeoutError, match="API request"),
    ):
        await reconciler.run("ns", "m")  # to the caller's handlers (resync: warning; kopf: retry)
    assert not any("exceeded" in r.getMessage() for r in caplog.records)
