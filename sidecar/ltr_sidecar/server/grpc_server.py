"""The gRPC data plane: ltr.v1.Scheduler, grpc.health.v1 and server reflection (the admin plane,
ltr.v1.PredictorAdmin, listens apart: `server.admin`).

Pure translation between protobuf messages and the core's surface-neutral types, and validation at the
edge (`validation.validate_request`); every `SidecarError` becomes the gRPC status of the same name
with the core's message. A generation that fails after it started ends with its final message and then
a non-OK status (UNAVAILABLE) naming what happened.
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
SERVICE_NAMES = (
    SCHEDULER,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)
#: Connection hygiene: ping idle clients, recycle long-lived connections, drop dead ones.
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.max_connection_idle_ms", 300_000),
    ("grpc.max_connection_age_ms", 3_600_000),
    ("grpc.max_connection_age_grace_ms", 120_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.so_reuseport", 0),
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
                predicted_output_tokens=s.predicted_output_tokens or 0.0,
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


async def abort_with(context: grpc.aio.ServicerContext, exc: SidecarError) -> None:
    """End the call with the status of `exc`'s code and its message."""
    await context.abort(grpc.StatusCode[exc.code.grpc_name], exc.message)


def server_options(max_message_bytes: int, max_streams: int = 1024) -> list[tuple[str, int]]:
    """grpc.aio server options: the receive limit, concurrent streams per connection, keepalive."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_concurrent_streams", max_streams),
        *KEEPALIVE_OPTIONS,
    ]


def bind(server: grpc.aio.Server, host: str, port: int, what: str) -> int:
    """Bind an insecure port; OSError naming the address when it cannot."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio raises on a port in use
        raise OSError(f"cannot bind {what} address {address}: {exc}") from None
    if bound == 0:
        raise OSError(f"cannot bind {what} address {address}")
    return bound


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
            await abort_with(context, exc)
            return
        try:
            async with contextlib.aclosing(self.core.submit(sub)) as events:
                async for ev in events:
                    if isinstance(ev, TokenChunk):
                        yield pb.GenerateResponse(request_id=sub.request_id, text=ev.text, tokens=ev.tokens)
                        continue
                    yield final_to_proto(sub.request_id, ev)
                    if ev.finish_reason in ("error", "cancelled"):
                        why = (
                            "the engine failed during generation"
                            if ev.finish_reason == "error"
                            else ("the sidecar cancelled the request (shutting down)")
                        )
                        await context.abort(grpc.StatusCode.UNAVAILABLE, why)
        except SidecarError as exc:
            await abort_with(context, exc)

    async def Rank(self, request: pb.RankRequest, context: grpc.aio.ServicerContext) -> pb.RankResponse:
        try:
            scores, version = await self.core.rank(list(request.prompts))
        except SidecarError as exc:
            await abort_with(context, exc)
            raise  # unreachable: abort raises
        return pb.RankResponse(scores=scores, order=rank_order(scores), predictor_version=version)

    async def GetQueue(
        self, request: pb.GetQueueRequest, context: grpc.aio.ServicerContext
    ) -> pb.QueueSnapshot:
        if request.limit < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "limit must be >= 0 (0 = default 100)")
        return snapshot_to_proto(self.core.snapshot(request.include_entries, request.limit or 100))


class GrpcSurface:
    """The data-plane grpc.aio server; `health_loop()` keeps health in step with the core."""

    def __init__(self, core: SchedulerCore, host: str = "0.0.0.0", port: int = 50051) -> None:
        self.core = core
        # A message holds the prompt plus a little: the prompt limit bounds what is read at all.
        limit = 2 * core.config.max_prompt_bytes + 64 * 1024
        self.server = grpc.aio.server(options=server_options(limit))
        pb_grpc.add_SchedulerServicer_to_server(SchedulerService(core), self.server)
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(SERVICE_NAMES, self.server)
        self.port = bind(self.server, host, port, "gRPC")
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
        for name in ("", SCHEDULER):
            await self.health.set(name, status)

    async def health_loop(self, period_s: float = 0.5) -> None:
        while True:
            await self.sync_health()
            await asyncio.sleep(period_s)

    async def stop(self, grace_s: float = 1.0) -> None:
        await self.server.stop(grace_s)
