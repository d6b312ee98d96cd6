"""Ask each pod's sidecar which predictor it serves (PredictorAdmin over gRPC, short timeouts).

The operator polls GetPredictor on the sidecars' admin plane (podIP:adminPort, bearer token) on its
resync timer (and after changes); the answers become status.predictor.pods. LoadPredictor drives canary
rollouts and rollbacks (an empty version puts a pod back on its config file's predictor).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc

from ltr.v1 import scheduler_pb2, scheduler_pb2_grpc


@dataclass(frozen=True)
class AdminAccess:
    """Where and how to call a pod's admin plane."""

    port: int
    token: str = field(repr=False)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


@dataclass(frozen=True)
class PodPredictor:
    """One pod's answer (error set when it could not be asked or its last load failed)."""

    name: str
    version: str = ""
    online_kendall_tau: float = 0.0
    online_samples: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def pod_address(pod: dict[str, Any], grpc_port: int) -> str | None:
    """host:port of a running, not-terminating pod's sidecar, else None."""
    meta, status = pod.get("metadata", {}), pod.get("status", {})
    if meta.get("deletionTimestamp") or status.get("phase") != "Running" or not status.get("podIP"):
        return None
    ip = status["podIP"]
    return f"[{ip}]:{grpc_port}" if ":" in ip else f"{ip}:{grpc_port}"


async def _call(
    address: str, admin: AdminAccess, timeout_s: float, method: str, request: Any
) -> scheduler_pb2.PredictorStatus:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = scheduler_pb2_grpc.PredictorAdminStub(channel)
        return await getattr(stub, method)(request, timeout=timeout_s, metadata=admin.metadata)


async def get_predictor(pod: dict[str, Any], admin: AdminAccess, timeout_s: float) -> PodPredictor:
    name = pod.get("metadata", {}).get("name", "")
    address = pod_address(pod, admin.port)
    if address is None:
        phase = pod.get("status", {}).get("phase", "Unknown")
        return PodPredictor(name, error=f"pod not serving (phase {phase})")
    try:
        reply = await _call(address, admin, timeout_s, "GetPredictor", scheduler_pb2.GetPredictorRequest())
    except grpc.aio.AioRpcError as exc:
        return PodPredictor(name, error=f"GetPredictor at {address}: {exc.code().name} {exc.details() or ''}")
    return PodPredictor(
        name,
        reply.version,
        round(reply.online_kendall_tau, 4),
        reply.online_samples,
        error=f"last load failed: {reply.last_error}" if reply.last_error else "",
    )


async def load_predictor(pod: dict[str, Any], admin: AdminAccess, version: str, timeout_s: float) -> str:
    """Ask a pod to load `version` ("": its config file's predictor); '' on success, else the error."""
    address = pod_address(pod, admin.port)
    if address is None:
        return "pod not serving"
    try:
        await _call(
            address, admin, timeout_s, "LoadPredictor", scheduler_pb2.LoadPredictorRequest(version=version)
        )
    except grpc.aio.AioRpcError as exc:
        return f"LoadPredictor({version}) at {address}: {exc.code().name} {exc.details() or ''}"
    return ""


async def probe_pods(pods: list[dict[str, Any]], admin: AdminAccess, timeout_s: float) -> list[PodPredictor]:
    """GetPredictor on every pod concurrently, sorted by pod name."""
    answers = await asyncio.gather(*(get_predictor(p, admin, timeout_s) for p in pods))
    return sorted(answers, key=lambda a: a.name)
