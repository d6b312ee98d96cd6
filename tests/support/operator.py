"""Helpers for operator tests: a JSON client playing kubectl, polling, kopf in a thread, fake sidecars."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import aiohttp
import grpc
import kopf

from ltr.v1 import scheduler_pb2
from ltr_operator import builders
from ltr_operator.spec import LTRServingSpec, parse_spec
from ltr_operator.status import RetrainResult


class Http:
    """Tiny JSON client for tests: play kubectl and the Deployment controller."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base, self.session = base, session

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/merge-patch+json"
    ) -> tuple[int, Any]:
        headers = {"Content-Type": content_type if method == "PATCH" else "application/json"}
        async with self.session.request(method, self.base + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def get(self, path: str) -> Any:
        status, data = await self.request("GET", path)
        return data if status == 200 else None

    async def create(self, path: str, body: Any) -> Any:
        status, data = await self.request("POST", path, body)
        assert status in (200, 201), data
        return data

    async def patch(self, path: str, body: Any, content_type: str = "application/merge-patch+json") -> Any:
        status, data = await self.request("PATCH", path, body, content_type)
        assert status == 200, data
        return data


async def eventually(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Await `check()` (sync or async) until it returns something truthy; fail with its last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")
        await asyncio.sleep(interval)


class KopfThread:
    """kopf.operator() in its own thread and event loop, stopped and joined on exit."""

    def __init__(
        self,
        registry: kopf.OperatorRegistry,
        settings: kopf.OperatorSettings | None = None,
        namespaces: list[str] | None = None,
    ) -> None:
        # Cluster-wide by default: kmock 0.8 cannot parse GET /api/v1/namespaces, which kopf's
        # namespace observer sends when namespaces are given.
        self.registry, self.settings, self.namespaces = registry, settings, namespaces
        self.stop_flag, self.ready_flag = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, name="kopf", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=self.registry,
                    settings=self.settings,
                    standalone=True,
                    namespaces=self.namespaces or [],
                    clusterwide=not self.namespaces,
                    stop_flag=self.stop_flag,
                    ready_flag=self.ready_flag,
                )
            )
        except BaseException as exc:  # surfaced by __exit__
            self.error = exc

    async def __aenter__(self) -> KopfThread:
        self.thread.start()  # wait off the loop: the emulator serves kopf from this test's loop
        if not await asyncio.to_thread(self.ready_flag.wait, 15):
            raise RuntimeError(f"kopf did not become ready: {self.error!r}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop_flag.set()
        await asyncio.to_thread(self.thread.join, 15)
        assert not self.thread.is_alive(), "kopf did not stop"


class FakeSidecar:
    """A real grpc.aio PredictorAdmin server standing in for one pod's sidecar's admin plane (it
    requires the operator's bearer token, as the real one does)."""

    def __init__(self, version: str = "", tau: float = 0.0, samples: int = 0, token: str = "") -> None:
        self.version, self.tau, self.samples, self.token = version, tau, samples, token
        self.taus: dict[str, tuple[float, int]] = {}  # version -> (online tau, samples) once loaded
        self.loads: list[str] = []
        self.fail_loads = False

    async def _authorize(self, context: Any) -> None:
        given = dict(context.invocation_metadata() or ()).get("authorization")
        if self.token and given != f"Bearer {self.token}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid admin bearer token is required")

    async def GetPredictor(self, request: Any, context: Any) -> Any:
        await self._authorize(context)
        tau, samples = self.taus.get(self.version, (self.tau, self.samples))
        return scheduler_pb2.PredictorStatus(
            version=self.version, online_kendall_tau=tau, online_samples=samples
        )

    async def LoadPredictor(self, request: Any, context: Any) -> Any:
        await self._authorize(context)
        self.loads.append(request.version)
        if self.fail_loads:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no version {request.version}")
        self.version = request.version
        return await self.GetPredictor(request, context)


OWNER = builders.Owner("demo", "ns", "uid-1")
INPUTS = builders.Inputs("engine:1", "sidecar:1", "v1")
NOW = "2026-01-01T00:00:00Z"


def spec(**fields: Any) -> LTRServingSpec:
    """A parsed spec for model "m" with `fields` set (retraining gets the recordPrompts it requires)."""
    if (fields.get("retraining") or {}).get("enabled") and "sidecar" not in fields:
        fields["sidecar"] = {"recordPrompts": True}
    return parse_spec({"model": {"name": "m"}, **fields})


def retrain_result(**kw: Any) -> RetrainResult:
    return RetrainResult(
        **{
            "status": "published",
            "candidate": "v2",
            "candidate_kendall_tau": 0.5,
            "current_kendall_tau": 0.4,
            **kw,
        }
    )
