"""The gRPC surface: ltr.v1.Scheduler, ltr.v1.PredictorAdmin, grpc.health.v1 and server reflection.

Pure translation between protobuf messages and the core's surface-neutral types; every
`SidecarError` becomes the gRPC status of the same name with the core's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ltr.contract import Outcome
from ltr.v1 import scheduler_pb2 as pb
from ltr.v1 import scheduler_pb2_grpc as pb_grpc
from ltr_sidecar.errors import SidecarError
from ltr_sidecar.sampling import NUMERIC_BOUNDS, SamplingParams
from ltr_sidecar.server.core import SchedulerCore
from ltr_sidecar.server.types import FinalResult, PredictorStatus, QueueSnapshot, SubmitRequest, TokenChunk
from ltr_sidecar.server.validation import validate_request

SCHEDULER = pb.DESCRIPTOR.services_by_name["Scheduler"].full_name
PREDICTOR_ADMIN = pb.DESCRIPTOR.services_by_name["PredictorAdmin"].full_name
SERVICE_NAMES = (
    SCHEDULER,
    PREDICTOR_ADMIN,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)
FINISH = {
    "stop": pb.FINISH_REASON_STOP,
    "length": pb.FINISH_REASON_LENGTH,
    "cancelled": pb.FINISH_REASON_CANCELLED,
    "error": pb.FINISH_REASON_ERROR,
}
SAMPLING_OPTIONAL = tuple(NUMERIC_BOUNDS)  # proto3 `optional` fields of ltr.v1.SamplingParams


# -- translation (pure) -----------------------------------------------------------------------------
def duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(max(0.0, seconds) * 1e9))
    return d


def timestamp(unix_s: float | None) -> timestamp_pb2.Timestamp | None:
    if unix_s is None:
        return None
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(unix_s * 1e9))
    return t


def to_submit(msg: pb.GenerateRequest, time_remaining: float | None = None) -> SubmitRequest:
    """GenerateRequest → SubmitRequest (SidecarError for bad sampling values). The gRPC call deadline
    also bounds the queue wait."""
    which = msg.WhichOneof("input")
    sampling: dict[str, Any] = {}
    if msg.HasField("sampling"):
        s = msg.sampling
        for key in SAMPLING_OPTIONAL:
            if s.HasField(key):
                value = getattr(s, key)
                sampling[key] = round(value, 6) if isinstance(value, float) else value
        if s.stop:
            sampling["stop"] = list(s.stop)
        if s.ignore_eos:
            sampling["ignore_eos"] = True
    deadline: float | None = msg.deadline.ToNanoseconds() / 1e9 if msg.HasField("deadline") else None
    if time_remaining is not None:
        call_deadline = time.time() + time_remaining
        deadline = call_deadline if deadline is None else min(deadline, call_deadline)
    return SubmitRequest(
        request_id=msg.request_id,
        max_tokens=msg.max_tokens,
        prompt=msg.prompt if which == "prompt" else None,
        messages=[{"role": m.role, "content": m.content} for m in msg.chat.messages]
        if which == "chat"
        else None,
        sampling=SamplingParams.parse(sampling, prefix="sampling."),
        priority=msg.priority,
        deadline=deadline,
        expected_output_tokens=msg.expected_output_tokens if msg.HasField("expected_output_tokens") else None,
        model=msg.model or None,
        no_trace=msg.no_trace,
    )


def final_to_proto(request_id: str, f: FinalResult) -> pb.GenerateResponse:
    s = f.scheduling
    return pb.GenerateResponse(
        request_id=request_id,
        final=pb.GenerateFinal(
            finish_reason=FINISH.get(f.finish_reason, pb.FINISH_REASON_UNSPECIFIED),
            usage=pb.Usage(prompt_tokens=f.prompt_tokens, completion_tokens=f.completion_tokens),
            scheduling=pb.SchedulingInfo(
                score=s.score,
                rank_at_arrival=s.rank_at_arrival,
                queue_wait=duration(s.queue_wait_s),
                promoted=s.promoted,
                policy=s.policy,
                predictor_version=s.predictor_version,
                priority=s.priority,
            ),
            time_to_first_token=duration(f.ttft_s),
            total_time=duration(f.total_s),
        ),
    )


def snapshot_to_proto(s: QueueSnapshot) -> pb.QueueSnapshot:
    return pb.QueueSnapshot(
        queue_length=s.queue_length,
        in_flight=s.in_flight,
        max_concurrency=s.max_concurrency,
        per_band=s.per_band,
        oldest_wait=duration(s.oldest_wait_s),
        predictor_version=s.predictor_version,
        policy=s.policy,
        starvation_threshold=duration(s.starvation_threshold_s),
        draining=s.draining,
        entries=[
            pb.QueueEntry(
                request_id=e.request_id,
                score=e.score,
                priority=e.priority,
                waited=duration(e.waited_s),
                promoted=e.promoted,
            )
            for e in s.entries
        ],
    )


def status_to_proto(s: PredictorStatus) -> pb.PredictorStatus:
    return pb.PredictorStatus(
        version=s.version,
        backbone=s.backbone,
        loaded_at=timestamp(s.loaded_at),
        last_error=s.last_error,
        online_kendall_tau=s.online_kendall_tau,
        online_samples=s.online_samples,
    )


def rank_order(scores: list[float]) -> list[int]:
    """Indices best first: highest score (shortest expected output) first, ties in request order."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


async def _abort(context: grpc.aio.ServicerContext, exc: SidecarError) -> None:
    await context.abort(grpc.StatusCode[exc.code.grpc_name], exc.message)


# -- services ---------------------------------------------------------------------------------------
class SchedulerService(pb_grpc.SchedulerServicer):
    def __init__(self, core: SchedulerCore) -> None:
        self.core = core

    async def Generate(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateResponse]:
        try:
            sub = to_submit(request, context.time_remaining())
            validate_request(sub, self.core.limits)
        except SidecarError as exc:
            self.core.metrics.request_finished(Outcome.INVALID)
            await _abort(context, exc)
            return
        try:
            async with contextlib.aclosing(self.core.submit(sub)) as events:
                async for ev in events:
                    if isinstance(ev, TokenChunk):
                        yield pb.GenerateResponse(request_id=sub.request_id, text=ev.text, tokens=ev.tokens)
                    else:
                        yield final_to_proto(sub.request_id, ev)
        except SidecarError as exc:
            await _abort(context, exc)

    async def Rank(self, request: pb.RankRequest, context: grpc.aio.ServicerContext) -> pb.RankResponse:
        try:
            scores, version = await self.core.rank(list(request.prompts))
        except SidecarError as exc:
            await _abort(context, exc)
            raise  # unreachable: abort raises
        return pb.RankResponse(scores=scores, order=rank_order(scores), predictor_version=version)

    async def GetQueue(
        self, request: pb.GetQueueRequest, context: grpc.aio.ServicerContext
    ) -> pb.QueueSnapshot:
        if request.limit < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "limit must be >= 0 (0 = default 100)")
        return snapshot_to_proto(self.core.snapshot(request.include_entries, request.limit or 100))


class PredictorAdminService(pb_grpc.PredictorAdminServicer):
    def __init__(self, core: SchedulerCore) -> None:
        self.core = core

    async def LoadPredictor(
        self, request: pb.LoadPredictorRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictorStatus:
        # Neither version nor path: back to the configured predictor (sidecar.yaml; the bundled one at cold
        # start). The operator's canary rollback to a cold-start "" needs it: INVALID_ARGUMENT here left
        # the bad candidate on the canary pod (found on the real control plane).
        try:
            status = await self.core.load_predictor(request.version or None, request.path or None)
        except SidecarError as exc:
            await _abort(context, exc)
            raise
        return status_to_proto(status)

    async def GetPredictor(
        self, request: pb.GetPredictorRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictorStatus:
        return status_to_proto(self.core.predictor_status())


class GrpcSurface:
    """The grpc.aio server with all services; `health_loop()` keeps health in step with the core."""

    def __init__(self, core: SchedulerCore, host: str = "0.0.0.0", port: int = 50051) -> None:
        self.core = core
        self.server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.so_reuseport", 0)]
        )
        pb_grpc.add_SchedulerServicer_to_server(SchedulerService(core), self.server)
        pb_grpc.add_PredictorAdminServicer_to_server(PredictorAdminService(core), self.server)
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(SERVICE_NAMES, self.server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio raises on a port in use
            raise OSError(f"cannot bind gRPC address {address}: {exc}") from None
        if self.port == 0:
            raise OSError(f"cannot bind gRPC address {address}")
        self._serving: bool | None = None

    async def start(self) -> None:
        await self.sync_health()
        await self.server.start()

    async def sync_health(self) -> None:
        """SERVING while the core is ready (started, not draining, engine answering)."""
        serving = self.core.ready
        if serving == self._serving:
            return
        self._serving = serving
        r = health_pb2.HealthCheckResponse
        status = r.SERVING if serving else r.NOT_SERVING
        for name in ("", SCHEDULER, PREDICTOR_ADMIN):
            await self.health.set(name, status)

    async def health_loop(self, period_s: float = 0.5) -> None:
        while True:
            await self.sync_health()
            await asyncio.sleep(period_s)

    async def stop(self, grace_s: float = 1.0) -> None:
        await self.server.stop(grace_s)
