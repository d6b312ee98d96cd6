"""The OpenAI-compatible HTTP front door against a scripted fake core (HTTP layer only)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ltr_sidecar.errors import ErrorCode, SidecarError
from ltr_sidecar.server.http_server import build_http_app
from ltr_sidecar.server.listener import bound_port
from ltr_sidecar.server.metrics import SidecarMetrics
from tests.support.fake_core import QUEUE_FULL, FakeCore

COMPLETION = {"model": "tiny-model", "prompt": "Say hi", "max_tokens": 3}
CHAT = {"model": "tiny-model", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 3}


async def _sse(resp: aiohttp.ClientResponse) -> list[Any]:
    frames = []
    async for raw in resp.content:
        line = raw.decode().strip()
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            frames.append(payload if payload == "[DONE]" else json.loads(payload))
    return frames


async def test_completion_non_streamed(
    http_url: str, session: aiohttp.ClientSession, fake_core: FakeCore
) -> None:
    async with session.post(
        f"{http_url}/v1/completions", json={**COMPLETION, "priority": 3}, headers={"x-request-id": "abc-1"}
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
        headers = resp.headers
    assert body["object"] == "text_completion" and body["id"] == "cmpl-abc-1"
    assert body["choices"][0]["text"] == "Hello world!"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    ltr = body["ltr"]
    assert ltr["score"] == 1.5 and ltr["rank_at_arrival"] == 2 and ltr["priority"] == 3
    assert "predicted_output_tokens" in ltr and ltr["predicted_output_tokens"] is None  # JSON null: unknown
    assert headers["x-request-id"] == "abc-1" and headers["x-ltr-rank"] == "2"
    assert headers["x-ltr-score"] == "1.5" and headers["x-ltr-queue-wait-ms"] == "12.500"
    assert headers["x-ltr-predictor-version"] == "v7" and headers["x-ltr-policy"] == "ltr"
    req = fake_core.submitted[0]
    assert req.request_id == "abc-1" and req.prompt == "Say hi" and req.max_tokens == 3 and req.priority == 3


async def test_chat_streamed_with_usage(http_url: str, session: aiohttp.ClientSession) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    async with session.post(f"{http_url}/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        rid = resp.headers["x-request-id"]
        frames = await _sse(resp)
    assert frames[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(f["choices"][0]["delta"].get("content", "") for f in frames[1:4]) == "Hello world!"
    final = frames[4]
    assert final["choices"][0]["finish_reason"] == "length" and final["ltr"]["queue_wait_s"] == 0.0125
    assert frames[5]["usage"]["completion_tokens"] == 3 and frames[5]["choices"] == []
    assert frames[6] == "[DONE]"
    assert all(f["id"] == f"chatcmpl-{rid}" for f in frames[:6])


async def test_chat_non_streamed(http_url: str, session: aiohttp.ClientSession, fake_core: FakeCore) -> None:
    fake_core.finish_reason = "stop"
    async with session.post(f"{http_url}/v1/chat/completions", json=CHAT) as resp:
        body = await resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello world!"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert fake_core.submitted[0].messages == [{"role": "user", "content": "Say hi"}]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("error", "status", "etype"),
    [
        (QUEUE_FULL, 429, "rate_limit_error"),
        (SidecarError(ErrorCode.UNAVAILABLE, "sidecar is draining"), 503, "service_unavailable"),
        (SidecarError(ErrorCode.DEADLINE_EXCEEDED, "deadline passed while queued"), 504, "timeout_error"),
        (
            SidecarError(ErrorCode.INVALID_ARGUMENT, "priority band 9 is not configured"),
            400,
            "invalid_request_error",
        ),
    ],
)
async def test_core_errors_map_to_status(
    http_url: str,
    session: aiohttp.ClientSession,
    fake_core: FakeCore,
    stream: bool,
    error: SidecarError,
    status: int,
    etype: str,
) -> None:
    fake_core.fail_before = error
    async with session.post(f"{http_url}/v1/completions", json={**COMPLETION, "stream": stream}) as resp:
        assert resp.status == status
        body = await resp.json()
        if status in (429, 503):
            assert resp.headers["retry-after"] == "1"
    assert body["error"]["message"] == error.message
    assert body["error"]["type"] == etype and body["error"]["code"] == error.code.grpc_name.lower()


async def test_invalid_input_is_400_and_counted(
    http_url: str, session: aiohttp.ClientSession, fake_core: FakeCore
) -> None:
    for data in (
        b"{not json",
        json.dumps({**COMPLETION, "max_tokens": -1}).encode(),
        json.dumps({**COMPLETION, "prompt": ""}).encode(),
    ):
        async with session.post(f"{http_url}/v1/completions", data=data) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["type"] == "invalid_request_error"
    async with session.post(
        f"{http_url}/v1/completions", json=COMPLETION, headers={"x-request-id": "bad id with spaces"}
    ) as resp:
        assert resp.status == 400
    assert fake_core.submitted == []  # nothing reached the core
    metrics = fake_core.metrics  # type: ignore[attr-defined]
    assert metrics.registry.get_sample_value("ltr_requests_total", {"outcome": "invalid"}) == 4


async def test_unknown_model_is_404(http_url: str, session: aiohttp.ClientSession) -> None:
    async with session.post(f"{http_url}/v1/completions", json={**COMPLETION, "model": "gpt-9"}) as resp:
        assert resp.status == 404
        assert "tiny-model" in (await resp.json())["error"]["message"]


async def test_engine_failure_mid_generation(
    http_url: str, session: aiohttp.ClientSession, fake_core: FakeCore
) -> None:
    fake_core.finish_reason = "error"
    async with session.post(f"{http_url}/v1/completions", json=COMPLETION) as resp:
        assert resp.status == 502
        assert "engine failed during generation: boom" in (await resp.json())["error"]["message"]
    async with session.post(f"{http_url}/v1/completions", json={**COMPLETION, "stream": True}) as resp:
        assert resp.status == 200  # headers were sent with the first token
        frames = await _sse(resp)
    assert frames[-2]["error"]["code"] == "unavailable" and frames[-1] == "[DONE]"
    fake_core.finish_reason = "length"
    fake_core.fail_after = SidecarError(ErrorCode.UNAVAILABLE, "engine connection lost")
    async with session.post(f"{http_url}/v1/completions", json={**COMPLETION, "stream": True}) as resp:
        frames = await _sse(resp)
    assert [f["choices"][0]["text"] for f in frames[:3]] == ["Hello", " world", "!"]
    assert frames[3]["error"]["message"] == "engine connection lost"


@pytest.mark.parametrize("stream", [False, True])
async def test_client_disconnect_cancels_queued_request(
    http_url: str, fake_core: FakeCore, stream: bool
) -> None:
    fake_core.gate = asyncio.Event()  # every request stays "queued"
    async with aiohttp.ClientSession() as s:
        task = asyncio.create_task(
            s.post(
                f"{http_url}/v1/completions",
                json={**COMPLETION, "stream": stream},
                headers={"x-request-id": "gone"},
            )
        )
        for _ in range(200):
            if fake_core.submitted:
                break
            await asyncio.sleep(0.01)
        assert fake_core.submitted, "request never reached the core"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    for _ in range(200):
        if fake_core.closed_early:
            break
        await asyncio.sleep(0.01)
    assert fake_core.closed_early == ["gone"] and fake_core.finished == []


async def test_client_disconnect_mid_stream_closes_core_stream(http_url: str, fake_core: FakeCore) -> None:
    fake_core.tokens = tuple(f"t{i} " for i in range(100_000))
    async with aiohttp.ClientSession() as s:
        resp = await s.post(
            f"{http_url}/v1/completions", json={**COMPLETION, "stream": True}, headers={"x-request-id": "mid"}
        )
        await resp.content.readline()
        resp.close()  # drop the connection mid-stream
    for _ in range(500):
        if fake_core.closed_early:
            break
        await asyncio.sleep(0.01)
    assert fake_core.closed_early == ["mid"] and fake_core.finished == []


async def test_models_health_metrics_live(
    http_url: str, session: aiohttp.ClientSession, fake_core: FakeCore
) -> None:
    async with session.get(f"{http_url}/v1/models") as resp:
        models = await resp.json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny-model"]

    async with session.get(f"{http_url}/health") as resp:
        assert resp.status == 200
        health = await resp.json()
    assert health["status"] == "ok" and health["predictor_version"] == "v7" and not health["fcfs_fallback"]
    fake_core.version = ""
    fake_core.draining = True
    async with session.get(f"{http_url}/health") as resp:
        assert resp.status == 503
        health = await resp.json()
    assert health["status"] == "draining" and health["fcfs_fallback"] is True
    fake_core.draining, fake_core.ready = False, False
    async with session.get(f"{http_url}/health") as resp:
        assert resp.status == 503 and (await resp.json())["status"] == "starting"
    async with session.get(f"{http_url}/live") as resp:
        assert resp.status == 200

    fake_core.metrics.request_finished("ok")  # type: ignore[attr-defined]
    async with session.get(f"{http_url}/metrics") as resp:
        assert resp.status == 200 and resp.headers["content-type"].startswith("text/plain")
        text = await resp.text()
    assert 'ltr_requests_total{outcome="ok"} 1.0' in text and "ltr_queue_wait_seconds_bucket" in text


async def test_unknown_route_and_method_are_json_errors(
    http_url: str, session: aiohttp.ClientSession
) -> None:
    async with session.get(f"{http_url}/v1/nothing") as resp:
        assert resp.status == 404 and (await resp.json())["error"]["type"] == "not_found_error"
    async with session.get(f"{http_url}/v1/completions") as resp:
        assert resp.status == 405 and "not allowed" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_disconnect_cancels_under_a_plain_runner(fake_core: FakeCore, stream: bool) -> None:
    """Without aiohttp's handler_cancellation (e.g. a plain AppRunner), the watcher still cancels."""
    fake_core.gate = asyncio.Event()
    runner = web.AppRunner(build_http_app(fake_core, SidecarMetrics()), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as s:
            task = asyncio.create_task(
                s.post(
                    f"http://127.0.0.1:{bound_port(runner)}/v1/completions",
                    json={**COMPLETION, "stream": stream},
                    headers={"x-request-id": "plain"},
                )
            )
            for _ in range(200):
                if fake_core.submitted:
                    break
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        for _ in range(300):
            if fake_core.closed_early:
                break
            await asyncio.sleep(0.01)
        assert fake_core.closed_early == ["plain"]
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("stream", [False, True])
async def test_core_bugs_become_json_500_not_crashes(
    http_url: str, session: aiohttp.ClientSession, fake_core: FakeCore, stream: bool
) -> None:
    fake_core.fail_before = RuntimeError("bug")
    async with session.post(f"{http_url}/v1/completions", json={**COMPLETION, "stream": stream}) as resp:
        assert resp.status == 500
        assert (await resp.json())["error"]["type"] == "internal_error"
    fake_core.fail_before = None
    fake_core.fail_after = RuntimeError("bug")
    async with session.post(f"{http_url}/v1/completions", json={**COMPLETION, "stream": True}) as resp:
        frames = await _sse(resp)
    assert frames[-2]["error"]["code"] == "internal" and frames[-1] == "[DONE]"
    fake_core.fail_after = None
    fake_core.omit_final = True
    async with session.post(f"{http_url}/v1/completions", json={**COMPLETION, "stream": True}) as resp:
        frames = await _sse(resp)
    assert "without a final result" in frames[-2]["error"]["message"]
    async with session.post(f"{http_url}/v1/completions", json=COMPLETION) as resp:
        assert resp.status == 500 and "without a final result" in (await resp.json())["error"]["message"]
    async with session.get(f"{http_url}/health") as resp:  # still serving
        assert resp.status == 200


async def test_oversized_body_is_413(http_url: str, session: aiohttp.ClientSession) -> None:
    body = json.dumps({**COMPLETION, "prompt": "x" * (17 * 1024 * 1024)}).encode()
    async with session.post(f"{http_url}/v1/completions", data=body) as resp:
        assert resp.status == 413
        assert "exceeds" in (await resp.json())["error"]["message"]
