"""Helpers of the sidecar core tests: test predictors, the scripted engine, core factories."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from ltr_sidecar.devtools.scripted_engine import ScriptedEngine
from ltr_sidecar.predictor.runtime.calibration import Calibration
from ltr_sidecar.server.config import SidecarConfig, validate
from ltr_sidecar.server.core import SchedulerCore

LEN_TAG = re.compile(r"len=(\d+)")


class TaggedPredictor:
    """Test predictor that reads the true length from a `len=N` tag in the prompt (score = -N).

    Makes scheduling assertions deterministic: its ranking is perfect (τ = 1)."""

    backbone = "test-tagged"

    def __init__(self, version: str = "tagged-v1", delay_s: float = 0.0) -> None:
        self.version = version
        self.delay_s = delay_s
        self.calls: list[int] = []

    def score(self, prompts: Sequence[str]) -> list[float]:
        self.calls.append(len(prompts))
        if self.delay_s:
            time.sleep(self.delay_s)
        return [-float(m.group(1)) if (m := LEN_TAG.search(p)) else 0.0 for p in prompts]


class CalibratedTaggedPredictor(TaggedPredictor):
    """A `TaggedPredictor` whose calibration maps its score -N back to N expected output tokens."""

    backbone = "test-tagged-calibrated"

    def __init__(self, version: str = "tagged-cal-v1", delay_s: float = 0.0) -> None:
        super().__init__(version, delay_s)
        self.meta = {"calibration": Calibration(xs=(-1e6, 0.0), ys=(1e6, 0.0), n=2).to_dict()}


def tagged(n: int, text: str = "write something") -> str:
    return f"len={n} {text}"


# The scripted OpenAI-protocol engine (ltr_sidecar.devtools.scripted_engine) under its test name.
FakeEngine = ScriptedEngine


def make_config(engine_url: str, **overrides: Any) -> SidecarConfig:
    raw = {
        "engine_url": engine_url,
        "grpc_port": 0,
        "http_port": 0,
        "host": "127.0.0.1",
        "max_concurrency": 2,
        "starvation_threshold": 0,
        "scoring_window_ms": 1,
    }
    raw.update(overrides)
    return validate(raw)


@contextlib.asynccontextmanager
async def running_core(
    engine_url: str, predictor: Any = None, metrics: Any = None, traces: Any = None, **overrides: Any
) -> AsyncIterator[SchedulerCore]:
    core = SchedulerCore(
        make_config(engine_url, **overrides),
        predictor=predictor if predictor is not None else TaggedPredictor(),
        metrics=metrics,
        traces=traces,
    )
    await core.start()
    try:
        yield core
    finally:
        await core.stop(grace_s=2.0)


async def collect(core: SchedulerCore, req: Any) -> list[Any]:
    return [ev async for ev in core.submit(req)]


def write_token(path: Path, token: str) -> Path:
    """An admin token file as the operator's Secret mount holds it (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def admin_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata the admin plane accepts."""
    return (("authorization", f"Bearer {token}"),)
