"""End to end: the official `openai` client → HTTP front door → real SchedulerCore → real
`transformers serve --continuous-batching` tiny engine (CPU). Marked slow."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from ltr_sidecar.data.traces import TraceStats, iter_trace_records
from ltr_sidecar.devtools.tiny_engine import EngineProcess
from ltr_sidecar.predictor import PromptLengthPredictor
from ltr_sidecar.server.config import SidecarConfig
from ltr_sidecar.server.core import SchedulerCore
from ltr_sidecar.server.http_server import build_http_app
from ltr_sidecar.server.listener import bound_port, start_http_server
from ltr_sidecar.server.metrics import SidecarMetrics
from ltr_sidecar.server.traces import TraceRecorder

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def engine(tiny_engine: EngineProcess) -> EngineProcess:
    """The suite-wide tiny engine (tests/conftest.py)."""
    return tiny_engine


@dataclass
class Sidecar:
    core: SchedulerCore
    metrics: SidecarMetrics
    traces: TraceRecorder
    client: openai.AsyncOpenAI
    url: str
    model: str


@contextlib.asynccontextmanager
async def sidecar(engine: EngineProcess, trace_dir: Path, **overrides: Any) -> AsyncIterator[Sidecar]:
    config = SidecarConfig(
        engine_url=engine.url,
        model=engine.model,
        policy="ltr",
        scoring_window_ms=1.0,
        starvation_threshold=0.0,
        trace_dir=str(trace_dir),
        record_prompts=True,
        **overrides,
    )
    metrics = SidecarMetrics()
    traces = TraceRecorder(trace_dir)
    core = SchedulerCore(
        config, predictor=PromptLengthPredictor(version="len-v1"), metrics=metrics, traces=traces
    )
    await core.start()
    runner = await start_http_server(build_http_app(core, metrics), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{bound_port(runner)}"
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
    try:
        yield Sidecar(core, metrics, traces, client, url, engine.model)
    finally:
        await client.close()
        await runner.cleanup()
        await core.stop(grace_s=5)
        traces.close()


def _ltr(obj: Any) -> dict[str, Any]:
    return obj.model_extra["ltr"]


async def test_completions_and_chat_unary(engine: EngineProcess, tmp_path: Path) -> None:
    async with sidecar(engine, tmp_path) as sc:
        raw = await sc.client.completions.with_raw_response.create(
            model=sc.model, prompt="Explain queues", max_tokens=6
        )
        resp = raw.parse()
        assert resp.object == "text_completion" and resp.choices[0].finish_reason == "length"
        assert resp.choices[0].text and resp.usage.completion_tokens == 6
        ltr = _ltr(resp)
        assert ltr["score"] == -len("Explain queues") and ltr["predictor_version"] == "len-v1"
        assert ltr["policy"] == "ltr" and ltr["rank_at_arrival"] == 0 and ltr["queue_wait_s"] >= 0
        assert raw.headers["x-ltr-predictor-version"] == "len-v1"
        assert float(raw.headers["x-ltr-score"]) == ltr["score"]

        chat = await sc.client.chat.completions.create(
            model=sc.model,
            max_tokens=5,
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        )
        assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
        # the random tiny model tends to emit special tokens after a chat template: text may be empty
        assert isinstance(chat.choices[0].message.content, str) and chat.usage.completion_tokens == 5
        assert _ltr(chat)["score"] == -len("system: be brief\nuser: hi")

        models = await sc.client.models.list()
        assert [m.id for m in models.data] == [sc.model]
        sc.traces.flush()
        stats = TraceStats()
        rows = list(iter_trace_records(tmp_path, stats))
        assert [r["output_tokens"] for r in rows] == [6, 5] and stats.corrupt == 0
        assert rows[0]["prompt"] == "Explain queues" and rows[0]["predictor_version"] == "len-v1"


async def test_streaming_completions_and_chat(engine: EngineProcess, tmp_path: Path) -> None:
    async with sidecar(engine, tmp_path) as sc:
        chunks = [
            c
            async for c in await sc.client.completions.create(
                model=sc.model,
                prompt="Tell a story",
                max_tokens=8,
                stream=True,
                stream_options={"include_usage": True},
            )
        ]
        texts = [c.choices[0].text for c in chunks if c.choices]
        finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
        assert len(finals) == 1 and finals[0].choices[0].finish_reason == "length"
        assert _ltr(finals[0])["predictor_version"] == "len-v1"
        assert "".join(texts)
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8

        stream = await sc.client.chat.completions.create(
            model=sc.model, max_tokens=7, stream=True, messages=[{"role": "user", "content": "count"}]
        )
        chunks = [c async for c in stream]
        assert chunks[0].choices[0].delta.role == "assistant"
        assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)
        assert chunks[-1].choices[0].finish_reason == "length"
        assert _ltr(chunks[-1])["score"] == -len("user: count")


async def test_queue_full_is_429_and_invalid_is_400(engine: EngineProcess, tmp_path: Path) -> None:
    async with sidecar(engine, tmp_path, max_concurrency=1, max_queue=1) as sc:
        blocker = asyncio.create_task(
            sc.client.completions.create(model=sc.model, prompt="long one", max_tokens=400)
        )
        for _ in range(500):  # wait until the blocker holds the engine's only slot
            if sc.core.in_flight == 1:
                break
            await asyncio.sleep(0.01)
        queued = asyncio.create_task(
            sc.client.completions.create(model=sc.model, prompt="queued", max_tokens=2)
        )
        for _ in range(500):
            if len(sc.core.queue) == 1:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(openai.RateLimitError) as full:
            await sc.client.completions.create(model=sc.model, prompt="one too many", max_tokens=2)
        assert full.value.status_code == 429 and "queue is full" in full.value.message

        with pytest.raises(openai.BadRequestError, match=r"max_tokens must be an integer in \[1, "):
            await sc.client.completions.create(model=sc.model, prompt="x", max_tokens=-1)
        with pytest.raises(openai.BadRequestError, match="non-empty string"):
            await sc.client.completions.create(model=sc.model, prompt="", max_tokens=2)
        with pytest.raises(openai.BadRequestError, match=r"messages\[0\].role"):
            await sc.client.chat.completions.create(
                model=sc.model, max_tokens=2, messages=[{"role": "robot", "content": "x"}]
            )
        with pytest.raises(openai.NotFoundError):
            await sc.client.completions.create(model="gpt-4o", prompt="x", max_tokens=2)

        done_queued = await queued
        assert _ltr(done_queued)["queue_wait_s"] > 0  # it waited for the blocker's slot
        await blocker
        get = sc.metrics.registry.get_sample_value
        assert get("ltr_requests_total", {"outcome": "ok"}) == 2
        assert get("ltr_requests_total", {"outcome": "rejected_full"}) == 1
        assert get("ltr_requests_total", {"outcome": "invalid"}) == 4


async def test_rank_order_is_explained(engine: EngineProcess, tmp_path: Path) -> None:
    """With one engine slot, queued requests are served shortest-predicted first; `ltr` says why."""
    async with sidecar(engine, tmp_path, max_concurrency=1) as sc:
        blocker = asyncio.create_task(
            sc.client.completions.create(model=sc.model, prompt="b", max_tokens=150)
        )
        for _ in range(500):
            if sc.core.in_flight == 1:
                break
            await asyncio.sleep(0.01)
        prompts = ["a much longer prompt " * 6, "mid length prompt", "short"]
        order: list[str] = []

        async def one(prompt: str) -> dict[str, Any]:
            resp = await sc.client.completions.create(model=sc.model, prompt=prompt, max_tokens=3)
            order.append(prompt)
            return _ltr(resp)

        tasks = []
        for p in prompts:
            tasks.append(asyncio.create_task(one(p)))
            for _ in range(500):
                if len(sc.core.queue) == len(tasks):
                    break
                await asyncio.sleep(0.01)
        infos = await asyncio.gather(*tasks)
        await blocker
        assert order == ["short", "mid length prompt", "a much longer prompt " * 6]
        assert [i["rank_at_arrival"] for i in infos] == [0, 0, 0]  # each, at its arrival, went first
        waits = {p: i["queue_wait_s"] for p, i in zip(prompts, infos, strict=True)}
        assert waits["short"] < waits["mid length prompt"] < waits["a much longer prompt " * 6]


async def test_client_disconnect_cancels(engine: EngineProcess, tmp_path: Path) -> None:
    async with sidecar(engine, tmp_path) as sc:
        stream = await sc.client.completions.create(
            model=sc.model, prompt="go on", max_tokens=2000, stream=True
        )
        got = 0
        async for _chunk in stream:
            got += 1
            if got == 3:
                break
        await stream.close()
        for _ in range(500):
            if sc.core.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert sc.core.in_flight == 0
        assert sc.metrics.registry.get_sample_value("ltr_requests_total", {"outcome": "cancelled"}) == 1
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{sc.url}/metrics") as resp:
                text = await resp.text()
            assert 'ltr_requests_total{outcome="cancelled"} 1.0' in text
            assert 'ltr_predictor_info{backbone="prompt-length",version="len-v1"} 1.0' in text
            async with http.get(f"{sc.url}/health") as resp:
                assert resp.status == 200
                health = await resp.json()
        assert health["ready"] and health["predictor_version"] == "len-v1" and not health["fcfs_fallback"]
