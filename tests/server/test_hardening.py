"""The serving path against hostile and unlucky clients: one test per finding of the security review
(issue 13), each run against the real sidecar (SidecarApp: gRPC + HTTP) in front of the scripted engine."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import grpc
import pytest

from ltr.v1 import scheduler_pb2 as pb
from ltr.v1 import scheduler_pb2_grpc as pb_grpc
from ltr_sidecar.devtools.ports import free_port
from ltr_sidecar.predictor.runtime.artifact import PredictorLoadError, write_manifest
from ltr_sidecar.predictor.runtime.registry import load_predictor
from ltr_sidecar.server.app import SidecarApp
from tests.support.sidecar import FakeEngine, TaggedPredictor, make_config, tagged

POISON = "POISON-PILL"  # the scripted engine answers HTTP 500 to a prompt that contains it


@pytest.fixture
async def app(fake_engine: FakeEngine, tmp_path: Path) -> AsyncIterator[SidecarApp]:
    fake_engine.poison = POISON
    sidecar = SidecarApp(
        make_config(
            fake_engine.url,
            max_concurrency=4,
            max_prompt_bytes=4096,
            trace_dir=str(tmp_path / "traces"),
            record_prompts=True,
            metrics_port=free_port(),
        ),
        predictor=TaggedPredictor(),
    )
    await sidecar.start()
    yield sidecar
    await sidecar.stop(grace_s=2.0)


@pytest.fixture
def url(app: SidecarApp) -> str:
    return f"http://127.0.0.1:{app.http_port}"


async def _post(session: aiohttp.ClientSession, url: str, body: object | bytes) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(f"{url}/v1/completions", data=data) as resp:
        return resp.status, await resp.json(content_type=None)


async def _generate(app: SidecarApp, msg: pb.GenerateRequest) -> list[pb.GenerateResponse]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
        return [m async for m in pb_grpc.SchedulerStub(ch).Generate(msg)]


# 2. Size limits -------------------------------------------------------------------------------------
async def test_oversized_prompts_are_refused_naming_the_limit(app: SidecarApp, url: str) -> None:
    async with aiohttp.ClientSession() as s:
        status, body = await _post(s, url, {"prompt": "x" * 5000, "max_tokens": 2})
    assert status == 413 and "max_prompt_bytes" in body["error"]["message"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _generate(app, pb.GenerateRequest(prompt="x" * 5000, max_tokens=2))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_prompt_bytes" in err.value.details()
    # Far beyond the limit, the body is not even read in full: HTTP's body cap and gRPC's message cap.
    async with aiohttp.ClientSession() as s:
        status, body = await _post(s, url, {"prompt": "x" * 200_000, "max_tokens": 2})
    assert status == 413
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _generate(app, pb.GenerateRequest(prompt="x" * 200_000, max_tokens=2))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_deeply_nested_json_is_a_400_not_a_500(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for depth in (100, 30_000):
            status, body = await _post(s, url, b"[" * depth + b"]" * depth)
            assert status == 400 and "max_json_depth" in body["error"]["message"]


def test_a_crafted_predictor_config_is_refused_before_allocating(tmp_path: Path) -> None:
    d = tmp_path / "crafted"
    d.mkdir()
    (d / "weights.safetensors").write_bytes(b"\0" * 16)
    config = {"out_dim": 1, "buckets": 10**9, "dim": 64, "hidden": 8, "max_chars": 100, "feature_version": 2}
    write_manifest(
        d,
        {"version": "evil", "backbone": "fast", "config": config, "objective": "listmle"},
        files=["weights.safetensors"],
    )
    with pytest.raises(PredictorLoadError, match="buckets"):
        load_predictor(d)


# 3. One client's input never degrades another's -------------------------------------------------------
async def test_invalid_text_is_refused_at_the_edge(
    app: SidecarApp, url: str, fake_engine: FakeEngine
) -> None:
    async with aiohttp.ClientSession() as s:
        status, body = await _post(s, url, b'{"prompt": "bad \\ud800 text", "max_tokens": 2}')
        assert (
            status == 400 and "prompt" in body["error"]["message"] and "surrogate" in body["error"]["message"]
        )
        status, body = await _post(s, url, {"prompt": "hi", "max_tokens": 2, "seed": 2**64})
        assert status == 400 and "seed" in body["error"]["message"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _generate(app, pb.GenerateRequest(prompt="hi", max_tokens=2, request_id="a\nb"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "request_id" in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        stops = pb.SamplingParams(stop=[f"s{i}" for i in range(17)])
        await _generate(app, pb.GenerateRequest(prompt="hi", max_tokens=2, sampling=stops))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most 16" in err.value.details()
    assert fake_engine.received == []  # nothing reached the engine


class _PickyPredictor(TaggedPredictor):
    """Raises for any batch that holds the word "boom" (as a tokenizer does on text it cannot take)."""

    def score(self, prompts: Sequence[str]) -> list[float]:
        if any("boom" in p for p in prompts):
            raise ValueError("cannot tokenize")
        return super().score(prompts)


async def test_a_scoring_failure_affects_only_its_request(fake_engine: FakeEngine) -> None:
    sidecar = SidecarApp(make_config(fake_engine.url, scoring_window_ms=50), predictor=_PickyPredictor())
    await sidecar.start()
    try:
        prompts = [tagged(n) for n in range(1, 31)] + ["boom " + tagged(99)]
        scored = await asyncio.gather(*(sidecar.core.rank([p]) for p in prompts))
    finally:
        await sidecar.stop(grace_s=1.0)
    scores = [s[0][0] for s in scored]
    assert scores[:30] == [-float(n) for n in range(1, 31)]  # co-arriving prompts keep their scores
    assert scores[30] == 0.0 and scored[30][1] == ""


async def test_an_engine_error_for_one_request_never_flips_readiness(app: SidecarApp, url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(5):
            status, body = await _post(s, url, {"prompt": POISON, "max_tokens": 2})
            assert status == 503 and "/opt/engine" not in json.dumps(body)
            assert app.core.ready
            async with s.get(f"{url}/health") as resp:
                assert resp.status == 200
        status, _ = await _post(s, url, {"prompt": tagged(2), "max_tokens": 2})
        assert status == 200


# 4. Traces degrade, never block ---------------------------------------------------------------------
async def test_an_unusable_trace_dir_means_no_traces_not_no_service(
    fake_engine: FakeEngine, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the trace directory should be")
    sidecar = SidecarApp(
        make_config(fake_engine.url, trace_dir=str(blocker / "traces")), predictor=TaggedPredictor()
    )
    await sidecar.start()
    try:
        assert sidecar.traces is None and sidecar.core.ready
        body = sidecar.metrics.render()[0].decode()
        assert "ltr_traces_enabled 0.0" in body and "ltr_trace_errors_total 1.0" in body
    finally:
        await sidecar.stop(grace_s=1.0)


async def test_trace_files_are_private(app: SidecarApp, url: str) -> None:
    async with aiohttp.ClientSession() as s:
        assert (await _post(s, url, {"prompt": tagged(2), "max_tokens": 2}))[0] == 200
    assert app.traces is not None
    await asyncio.to_thread(app.traces.flush)
    directory = app.traces.directory
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    files = list(directory.glob("traces.jsonl*"))
    assert files and all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in files)


# 5, 6. The metrics port serves only /metrics; errors and /health expose nothing internal ------------
async def test_metrics_port_serves_only_metrics(app: SidecarApp) -> None:
    assert app.metrics_port
    base = f"http://127.0.0.1:{app.metrics_port}"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/metrics") as resp:
            assert resp.status == 200 and "ltr_queue_size" in await resp.text()
        async with s.post(f"{base}/v1/completions", json={"prompt": "hi", "max_tokens": 1}) as resp:
            assert resp.status in (404, 405, 413)
        async with s.get(f"{base}/health") as resp:
            assert resp.status == 404


async def test_health_carries_no_errors_or_paths(fake_engine: FakeEngine, tmp_path: Path) -> None:
    config = make_config(fake_engine.url, predictor_dir=str(tmp_path / "secret-dir"))
    sidecar = SidecarApp(config)
    await sidecar.start()
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{sidecar.http_port}/health") as resp,
        ):
            text = await resp.text()
        assert "secret-dir" not in text and str(tmp_path) not in text
        assert json.loads(text)["predictor_error"] is True
    finally:
        await sidecar.stop(grace_s=1.0)


# 7. Connection hygiene ------------------------------------------------------------------------------
async def test_idle_and_partial_connections_are_closed_and_capped(fake_engine: FakeEngine) -> None:
    config = make_config(fake_engine.url, idle_timeout_s=1, body_timeout_s=1, max_connections=8)
    sidecar = SidecarApp(config, predictor=TaggedPredictor())
    await sidecar.start()
    port = sidecar.http_port
    try:
        hogs = [await asyncio.open_connection("127.0.0.1", port) for _ in range(8)]
        for _, writer in hogs[:4]:
            writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # headers never finish
        for _, writer in hogs[4:]:  # a body that never arrives
            writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        await asyncio.gather(*(w.drain() for _, w in hogs))
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # over the cap: refused
        assert b"503" in await asyncio.wait_for(reader.read(200), 5)
        writer.close()
        for reader, _ in hogs:  # each hog is answered (408/400) or closed within the timeouts
            await asyncio.wait_for(reader.read(), 5)
        async with aiohttp.ClientSession() as s:  # and the front door serves again
            status, _ = await _post(s, f"http://127.0.0.1:{port}", {"prompt": tagged(2), "max_tokens": 2})
        assert status == 200
    finally:
        await sidecar.stop(grace_s=1.0)


# 8. Minor findings ----------------------------------------------------------------------------------
async def test_a_mid_stream_engine_failure_ends_grpc_with_a_status(
    app: SidecarApp, fake_engine: FakeEngine
) -> None:
    fake_engine.fail_after = 2
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _generate(app, pb.GenerateRequest(prompt=tagged(5), max_tokens=5))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "engine failed" in err.value.details()


async def test_chat_without_max_tokens_gets_the_configured_default(url: str, fake_engine: FakeEngine) -> None:
    async with aiohttp.ClientSession() as s:
        body = {"messages": [{"role": "user", "content": tagged(1)}]}
        async with s.post(f"{url}/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
    assert fake_engine.received[-1]["max_tokens"] == 1024
