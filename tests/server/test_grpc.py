"""The gRPC data plane through the generated stubs: Generate/Rank/GetQueue, health, reflection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ltr.v1 import scheduler_pb2 as pb
from ltr.v1 import scheduler_pb2_grpc as pb_grpc
from ltr_sidecar.server.app import SidecarApp
from tests.support.sidecar import (
    CalibratedTaggedPredictor,
    FakeEngine,
    TaggedPredictor,
    make_config,
    tagged,
)


@pytest.fixture
async def app(fake_engine: FakeEngine) -> AsyncIterator[SidecarApp]:
    sidecar = SidecarApp(
        make_config(fake_engine.url, max_concurrency=1, max_queue=3), predictor=TaggedPredictor()
    )
    await sidecar.start()
    yield sidecar
    await sidecar.stop(grace_s=2.0)


@pytest.fixture
async def channel(app: SidecarApp) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
        yield ch


def gen(prompt: str, max_tokens: int = 3, **kw) -> pb.GenerateRequest:
    return pb.GenerateRequest(prompt=prompt, max_tokens=max_tokens, **kw)


async def test_generate_streams_and_ends_with_final(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.SchedulerStub(channel)
    msgs = [
        m
        async for m in stub.Generate(
            gen(tagged(4), 4, request_id="r1", sampling=pb.SamplingParams(temperature=0.7, stop=["zz"]))
        )
    ]
    assert "".join(m.text for m in msgs[:-1]) == "xxxx" and sum(m.tokens for m in msgs) == 4
    assert all(m.request_id == "r1" for m in msgs)
    assert [m.HasField("final") for m in msgs] == [False] * (len(msgs) - 1) + [True]
    final = msgs[-1].final
    assert final.finish_reason == pb.FINISH_REASON_LENGTH and final.usage.completion_tokens == 4
    assert final.scheduling.score == -4.0 and final.scheduling.policy == "ltr"
    assert final.scheduling.predictor_version == "tagged-v1"
    assert final.scheduling.predicted_output_tokens == 0.0  # uncalibrated predictor: unknown
    assert final.total_time.ToNanoseconds() >= final.time_to_first_token.ToNanoseconds() > 0


async def test_generate_chat(channel: grpc.aio.Channel, fake_engine: FakeEngine) -> None:
    stub = pb_grpc.SchedulerStub(channel)
    chat = pb.ChatMessages(
        messages=[
            pb.ChatMessage(role="system", content="be brief"),
            pb.ChatMessage(role="user", content="len=2 hi"),
        ]
    )
    msgs = [m async for m in stub.Generate(pb.GenerateRequest(chat=chat, max_tokens=2))]
    assert msgs[-1].final.usage.completion_tokens == 2
    assert fake_engine.received[0]["messages"][1] == {"role": "user", "content": "len=2 hi"}


@pytest.mark.parametrize(
    "request_msg",
    [
        gen("", 3),
        gen("hi", 0),
        gen("hi", 100_000),
        gen("hi", 3, priority=5),
        pb.GenerateRequest(max_tokens=3),
        pb.GenerateRequest(chat=pb.ChatMessages(), max_tokens=3),
        pb.GenerateRequest(
            chat=pb.ChatMessages(messages=[pb.ChatMessage(role="bot", content="x")]), max_tokens=3
        ),
    ],
)
async def test_invalid_input_maps_to_invalid_argument(
    channel: grpc.aio.Channel, request_msg: pb.GenerateRequest
) -> None:
    stub = pb_grpc.SchedulerStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        [m async for m in stub.Generate(request_msg)]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details()


async def test_queue_full_is_resource_exhausted(
    channel: grpc.aio.Channel, fake_engine: FakeEngine, app: SidecarApp
) -> None:
    fake_engine.gate = asyncio.Event()
    stub = pb_grpc.SchedulerStub(channel)
    calls = [stub.Generate(gen(tagged(1)))]
    readers = [asyncio.create_task(_drain(calls[0]))]
    while app.core.in_flight < 1:
        await asyncio.sleep(0.01)
    for _ in range(3):
        calls.append(stub.Generate(gen(tagged(1))))
        readers.append(asyncio.create_task(_drain(calls[-1])))
    while len(app.core.queue) < 3:
        await asyncio.sleep(0.01)
    snap = await stub.GetQueue(pb.GetQueueRequest(include_entries=True))
    assert (snap.queue_length, snap.in_flight, snap.max_concurrency) == (3, 1, 1)
    assert len(snap.entries) == 3 and snap.policy == "ltr" and snap.predictor_version == "tagged-v1"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _drain(stub.Generate(gen(tagged(1))))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "full" in err.value.details()
    fake_engine.gate.set()
    assert all(r[-1].final.finish_reason == pb.FINISH_REASON_LENGTH for r in await asyncio.gather(*readers))


async def _drain(call) -> list[pb.GenerateResponse]:
    return [m async for m in call]


async def test_client_cancel_removes_from_queue(
    channel: grpc.aio.Channel, fake_engine: FakeEngine, app: SidecarApp
) -> None:
    fake_engine.gate = asyncio.Event()
    stub = pb_grpc.SchedulerStub(channel)
    first = asyncio.create_task(_drain(stub.Generate(gen(tagged(1)))))
    while app.core.in_flight < 1:
        await asyncio.sleep(0.01)
    call = stub.Generate(gen(tagged(1), request_id="gone"))
    reader = asyncio.create_task(_drain(call))
    while "gone" not in app.core.queue:
        await asyncio.sleep(0.01)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    for _ in range(200):
        if len(app.core.queue) == 0:
            break
        await asyncio.sleep(0.01)
    assert len(app.core.queue) == 0
    fake_engine.gate.set()
    await first
    assert len(fake_engine.received) == 1


async def test_rank_orders_shortest_first(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.SchedulerStub(channel)
    resp = await stub.Rank(pb.RankRequest(prompts=[tagged(50), tagged(5), tagged(20)]))
    assert list(resp.scores) == [-50.0, -5.0, -20.0] and list(resp.order) == [1, 2, 0]
    assert resp.predictor_version == "tagged-v1"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Rank(pb.RankRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_health_serving_then_not_serving_on_drain(app: SidecarApp, channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "ltr.v1.Scheduler"):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    app.core._draining = True  # what stop() does first; the health loop follows within its period
    await app.grpc.sync_health()
    resp = await health.Check(health_pb2.HealthCheckRequest(service="ltr.v1.Scheduler"))
    assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _drain(pb_grpc.SchedulerStub(channel).Generate(gen("hi")))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    app.core._draining = False


async def test_reflection_lists_services(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests():
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        yield reflection_pb2.ServerReflectionRequest(file_containing_symbol="ltr.v1.Scheduler")

    responses = [r async for r in stub.ServerReflectionInfo(requests())]
    names = {s.name for s in responses[0].list_services_response.service}
    assert names == {"ltr.v1.Scheduler", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    assert responses[1].file_descriptor_response.file_descriptor_proto


async def test_config_file_change_hot_reloads_predictor(fake_engine: FakeEngine, tmp_path: Path) -> None:
    from ltr_sidecar.predictor import PromptLengthPredictor
    from ltr_sidecar.server.config import load_config

    for v in ("v1", "v2"):
        PromptLengthPredictor(version=f"plen-{v}").save(tmp_path / v)
    # Kubernetes mounts ConfigMaps through a symlink that it swaps: the watcher compares content.
    data1, data2 = tmp_path / "..data1", tmp_path / "..data2"
    data1.mkdir()
    data2.mkdir()
    base = f"engine_url: {fake_engine.url}\ngrpc_port: 0\nhttp_port: 0\nhost: 127.0.0.1\n"
    (data1 / "sidecar.yaml").write_text(base + f"predictor_dir: {tmp_path / 'v1'}\n")
    (data2 / "sidecar.yaml").write_text(base + f"predictor_dir: {tmp_path / 'v2'}\n")
    link = tmp_path / "sidecar.yaml"
    link.symlink_to(data1 / "sidecar.yaml")
    app = SidecarApp(load_config(link), config_path=link)
    await app.start()
    try:
        assert app.core.predictor_version == "plen-v1"
        assert await app.check_config() is False  # unchanged
        tmp_link = tmp_path / "tmp-link"
        tmp_link.symlink_to(data2 / "sidecar.yaml")
        tmp_link.replace(link)
        assert await app.check_config() is True and app.core.predictor_version == "plen-v2"
        link.unlink()
        link.write_text(base + "predictor_dir: [oops\n")  # invalid: keep running config
        assert await app.check_config() is False and app.core.predictor_version == "plen-v2"
        link.write_text(base + f"predictor_dir: {tmp_path / 'missing'}\n")  # failed load keeps the old one
        assert await app.check_config() is False and app.core.predictor_version == "plen-v2"
        assert "missing" in app.core.predictor_status().last_error
    finally:
        await app.stop(1.0)


async def test_predicted_output_tokens_on_both_surfaces_and_metrics(fake_engine: FakeEngine) -> None:
    """A calibrated predictor: SchedulingInfo (gRPC), the `ltr` object (HTTP) and the token metrics."""
    app = SidecarApp(make_config(fake_engine.url), predictor=CalibratedTaggedPredictor())
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
            msgs = [m async for m in pb_grpc.SchedulerStub(ch).Generate(gen(tagged(7), 3))]
        assert msgs[-1].final.scheduling.predicted_output_tokens == 7.0
        url = f"http://127.0.0.1:{app.http_port}"
        async with aiohttp.ClientSession() as s:
            for path, body in (
                ("/v1/completions", {"prompt": tagged(9), "max_tokens": 2}),
                (
                    "/v1/chat/completions",
                    {"messages": [{"role": "user", "content": tagged(4)}], "max_tokens": 2},
                ),
            ):
                async with s.post(url + path, json=body) as resp:
                    assert resp.status == 200
                    ltr = (await resp.json())["ltr"]
                assert ltr["predicted_output_tokens"] == (9.0 if "prompt" in body else 4.0)
            async with s.get(url + "/metrics") as resp:
                text = await resp.text()
    finally:
        await app.stop(grace_s=2.0)
    assert "ltr_queue_predicted_tokens 0.0" in text
    assert "ltr_request_predicted_output_tokens_sum 20.0" in text
    assert "ltr_request_output_tokens_count 3.0" in text
