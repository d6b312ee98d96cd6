"""Helpers of the closed-loop tests: the replay length mapping, the shipped sample reader and a gRPC
replay client that counts every final message per request id."""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from ltr.v1 import scheduler_pb2 as pb
from ltr.v1 import scheduler_pb2_grpc as pb_grpc

MAX_REPLAY_TOKENS = 48
#: Training flags of the closed-loop tests: the fast ranker, deterministic, on CPU.
FAST_CPU = ["--backbone", "fast", "--bucket", "0", "--seed", "0", "--device", "cpu"]
CALL_TIMEOUT_S = 240.0  # per stream; generous: CI cores are shared (pytest-timeout is 300 s)


def replay_tokens(words: float) -> int:
    """Recorded answer length (words) -> replay max_tokens in [1, 48]: monotone (log-scaled), so the
    ranking signal survives while the tiny engine's work stays small. Pure."""
    return max(1, min(MAX_REPLAY_TOKENS, round(8 * math.log2(1 + words / 8))))


def read_sample(path: Path) -> list[dict[str, Any]]:
    """Rows of a shipped sample file as {'prompt', 'max_tokens'} (max_tokens = mapped replay length)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return [{"prompt": r["prompt"], "max_tokens": replay_tokens(r["response_words"])} for r in rows]


@dataclass
class Replay:
    """Everything a replay client saw: final messages by request id, stream errors, arrival order."""

    finals: dict[str, list[Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def final_counts(self) -> Counter[str]:
        return Counter({rid: len(f) for rid, f in self.finals.items()})

    def done(self) -> int:
        return sum(1 for f in self.finals.values() if f) + len(self.errors)

    async def wait(self) -> None:
        await asyncio.gather(*self.tasks)


async def _generate(
    stub: pb_grpc.SchedulerStub, replay: Replay, request_id: str, row: dict[str, Any], no_trace: bool
) -> None:
    finals = replay.finals.setdefault(request_id, [])
    try:
        call = stub.Generate(
            pb.GenerateRequest(
                request_id=request_id, prompt=row["prompt"], max_tokens=row["max_tokens"], no_trace=no_trace
            ),
            timeout=CALL_TIMEOUT_S,
        )
        async for msg in call:
            assert msg.request_id == request_id, (msg.request_id, request_id)
            if msg.HasField("final"):
                finals.append(msg.final)
    except grpc.aio.AioRpcError as exc:
        replay.errors[request_id] = f"{exc.code().name}: {exc.details()}"


def submit(
    stub: pb_grpc.SchedulerStub, replay: Replay, request_id: str, row: dict[str, Any], no_trace: bool = False
) -> None:
    """Start one Generate stream over gRPC (a task owned by `replay`)."""
    replay.tasks.append(asyncio.create_task(_generate(stub, replay, request_id, row, no_trace)))
