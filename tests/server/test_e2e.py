"""End to end against a REAL engine: `transformers serve --continuous-batching` on CPU with a tiny
random-init Llama (EOS unreachable, so every request generates exactly max_tokens)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ltr.v1 import scheduler_pb2 as pb
from ltr.v1 import scheduler_pb2_grpc as pb_grpc
from ltr_sidecar.devtools.ports import free_port
from ltr_sidecar.devtools.tiny_engine import EngineProcess
from ltr_sidecar.sampling import SamplingParams
from ltr_sidecar.server.app import SidecarApp
from ltr_sidecar.server.types import FinalResult, SubmitRequest, TokenChunk
from tests.support.sidecar import TaggedPredictor, collect, make_config, running_core, tagged

pytestmark = pytest.mark.slow


def req(n: int, text: str = "tell me", **kw) -> SubmitRequest:
    return SubmitRequest(request_id=kw.pop("request_id", ""), max_tokens=n, prompt=tagged(n, text), **kw)


async def test_grpc_generate_rank_getqueue_against_real_engine(tiny_engine: EngineProcess) -> None:
    app = SidecarApp(make_config(tiny_engine.url, max_concurrency=4), predictor=TaggedPredictor())
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
            health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            stub = pb_grpc.SchedulerStub(ch)
            msgs = [m async for m in stub.Generate(pb.GenerateRequest(prompt=tagged(12), max_tokens=12))]
            final = msgs[-1].final
            assert final.finish_reason == pb.FINISH_REASON_LENGTH and final.usage.completion_tokens == 12
            assert final.usage.prompt_tokens > 0 and sum(m.tokens for m in msgs[:-1]) >= 1
            assert "".join(m.text for m in msgs[:-1])
            chat = pb.ChatMessages(messages=[pb.ChatMessage(role="user", content="len=5 hello there")])
            msgs = [m async for m in stub.Generate(pb.GenerateRequest(chat=chat, max_tokens=5))]
            assert msgs[-1].final.usage.completion_tokens == 5
            rank = await stub.Rank(pb.RankRequest(prompts=[tagged(9), tagged(3)]))
            assert list(rank.order) == [1, 0]
            snap = await stub.GetQueue(pb.GetQueueRequest())
            assert snap.queue_length == 0 and snap.in_flight == 0 and snap.max_concurrency == 4
        assert app.core.served_model == tiny_engine.model
    finally:
        await app.stop(5)


async def test_ignore_eos_request_still_served_by_strict_engine(tiny_engine: EngineProcess) -> None:
    async with running_core(tiny_engine.url) as core:
        events = await collect(core, req(6, sampling=SamplingParams(ignore_eos=True, temperature=0.0)))
        assert core.engine.vendor_fields is False  # transformers serve answers 422 to ignore_eos
    assert events[-1].completion_tokens == 6 and events[-1].finish_reason == "length"


async def _burst(engine_url: str, policy: str, lengths: list[int]) -> list[FinalResult]:
    async with running_core(engine_url, policy=policy, max_concurrency=2) as core:
        tasks = []
        for n in lengths:
            tasks.append(asyncio.create_task(collect(core, req(n))))
            await asyncio.sleep(0.002)
        results = await asyncio.gather(*tasks)
    return [r[-1] for r in results]


async def test_ltr_beats_fcfs_on_mean_per_token_latency(tiny_engine: EngineProcess) -> None:
    rng = random.Random(4)
    lengths = [150] * 4 + [8] * 14
    rng.shuffle(lengths)
    lengths = [150, *lengths]  # a long one first, as in head-of-line blocking
    fcfs = await _burst(tiny_engine.url, "fcfs", lengths)
    ltr = await _burst(tiny_engine.url, "ltr", lengths)
    for results in (fcfs, ltr):
        assert [f.completion_tokens for f in results] == lengths  # EOS unreachable: exact lengths

    def per_token(results: list[FinalResult]) -> float:
        return statistics.mean(f.total_s / f.completion_tokens for f in results)

    f, t = per_token(fcfs), per_token(ltr)
    print(f"mean per-token latency: FCFS {f * 1000:.1f} ms, LTR {t * 1000:.1f} ms, ratio {f / t:.2f}x")
    assert t < f


async def test_long_request_not_starved_by_stream_of_short_ones(tiny_engine: EngineProcess) -> None:
    threshold = 0.5
    async with running_core(tiny_engine.url, max_concurrency=1, starvation_threshold=threshold) as core:
        solo = (await collect(core, req(40, "calibrate")))[-1]
        service = solo.total_s
        stop = asyncio.Event()
        shorts_done: list[tuple[float, float]] = []  # (sent, finished) of each short request

        async def short() -> None:
            sent = time.monotonic()
            await collect(core, req(4))
            shorts_done.append((sent, time.monotonic()))

        async def shorts() -> None:
            # a steady backlog (not a fixed rate): however fast the engine, shorter work is always
            # queued ahead of the long request, so only the starvation guard can let it through
            sent: list[asyncio.Task[None]] = []
            while not stop.is_set():
                while sum(not t.done() for t in sent) < 4:
                    sent.append(asyncio.create_task(short()))
                await asyncio.sleep(0.002)
            await asyncio.gather(*sent)

        feeder = asyncio.create_task(shorts())
        await asyncio.sleep(0.1)
        long_sent = time.monotonic()
        try:  # without the guard the backlog never lets it through: fail, don't hang
            long_final = (await asyncio.wait_for(collect(core, req(40, "long")), threshold + 30))[-1]
        finally:
            long_done = time.monotonic()
            stop.set()
        await feeder
    # the backlog was real: shorts sent after the long one finished before it (however slow the machine)
    overtook = sum(long_sent < sent and done < long_done for sent, done in shorts_done)
    assert long_final.scheduling.promoted and overtook >= 3, (overtook, len(shorts_done))
    # waits for the threshold, then at most the request in service before it, then its own service
    assert long_final.total_s < threshold + 3 * service + 0.5, (long_final, service)


async def test_engine_down_unavailable_fast() -> None:
    async with running_core(f"http://127.0.0.1:{free_port()}") as core:
        start = time.monotonic()
        with pytest.raises(Exception) as err:
            await collect(core, req(3))
        assert time.monotonic() - start < 5 and "unavailable" in str(err.value)


async def test_hot_reload_under_load_loses_and_duplicates_nothing(
    tiny_engine: EngineProcess, tmp_path: Path
) -> None:
    from ltr_sidecar.predictor import PromptLengthPredictor

    PromptLengthPredictor(version="plen-a").save(tmp_path / "a")
    PromptLengthPredictor(version="plen-b").save(tmp_path / "b")
    async with running_core(tiny_engine.url, max_concurrency=4) as core:
        tasks, reloads = [], 0
        for i in range(48):  # arrivals interleaved with reloads: queued requests span versions
            tasks.append(asyncio.create_task(collect(core, req(3 + i % 5, request_id=f"r{i}"))))
            if i % 4 == 3:
                await core.load_predictor(path=str(tmp_path / ("a" if reloads % 2 else "b")))
                reloads += 1
            await asyncio.sleep(0.005)
        results = await asyncio.gather(*tasks)
    assert reloads == 12
    finals = [[e for e in r if isinstance(e, FinalResult)] for r in results]
    assert all(len(f) == 1 and f[0].finish_reason == "length" for f in finals)
    assert [f[0].completion_tokens for f in finals] == [3 + i % 5 for i in range(48)]
    assert all(sum(isinstance(e, TokenChunk) for e in r) >= 1 for r in results)
    versions = {f[0].scheduling.predictor_version for f in finals}
    assert versions <= {"tagged-v1", "plen-a", "plen-b"} and len(versions) >= 2


def test_sigterm_drains_without_losing_requests(tiny_engine: EngineProcess, tmp_path: Path) -> None:
    grpc_port = free_port()
    config = tmp_path / "sidecar.yaml"
    config.write_text(
        f"engine_url: {tiny_engine.url}\nmax_concurrency: 2\ngrpc_port: {grpc_port}\n"
        f"http_port: {free_port()}\nhost: 127.0.0.1\ndrain_grace_s: 60\npolicy: fcfs\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ltr.cli", "sidecar", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        asyncio.run(_sigterm_scenario(proc, grpc_port))
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out


async def _sigterm_scenario(proc: subprocess.Popen, port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        health = health_pb2_grpc.HealthStub(ch)
        deadline = time.monotonic() + 60
        while True:
            try:
                r = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.aio.AioRpcError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "sidecar did not become SERVING"
            await asyncio.sleep(0.2)
        stub = pb_grpc.SchedulerStub(ch)

        async def one(i: int) -> list[pb.GenerateResponse]:
            return [m async for m in stub.Generate(pb.GenerateRequest(prompt=f"drain {i}", max_tokens=30))]

        tasks = [asyncio.create_task(one(i)) for i in range(8)]
        for _ in range(100):
            snap = await stub.GetQueue(pb.GetQueueRequest())
            if snap.queue_length + snap.in_flight == 8:
                break
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        for _ in range(100):
            r = await health.Check(health_pb2.HealthCheckRequest(service=""))
            if r.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            await asyncio.sleep(0.02)
        assert r.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await one(99)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        results = await asyncio.gather(*tasks)
    assert [r[-1].final.usage.completion_tokens for r in results] == [30] * 8


async def test_auto_concurrency_serves_a_burst(tiny_engine: EngineProcess) -> None:
    async with running_core(tiny_engine.url, max_concurrency="auto") as core:
        lengths = [120 if i % 6 == 0 else 8 for i in range(60)]
        tasks = [asyncio.create_task(collect(core, req(n))) for n in lengths]  # saturates the limit
        samples = []
        while not all(t.done() for t in tasks):
            samples.append((core.in_flight, core.admission.limit))
            await asyncio.sleep(0.05)
        results = await asyncio.gather(*tasks)
    assert [r[-1].completion_tokens for r in results] == lengths
    tuning = core.admission.tuning
    highest = [max(limit for _, limit in samples[: i + 1]) for i in range(len(samples))]
    assert all(in_flight <= top for (in_flight, _), top in zip(samples, highest, strict=True))
    assert all(tuning.minimum <= limit <= tuning.maximum for _, limit in samples)
    assert sum(core.admission.decisions.values()) >= 1  # saturated for > 0.5 s: the controller acted
