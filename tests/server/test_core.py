"""SchedulerCore against a scripted OpenAI-protocol engine: ordering, errors, cancellation, drain, reload."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ltr_sidecar.errors import ErrorCode, SidecarError
from ltr_sidecar.sampling import SamplingParams
from ltr_sidecar.server.types import FinalResult, SubmitRequest, TokenChunk
from tests.support.sidecar import (
    CalibratedTaggedPredictor,
    FakeEngine,
    TaggedPredictor,
    collect,
    running_core,
    tagged,
)


def req(prompt: str, max_tokens: int = 4, **kw) -> SubmitRequest:
    return SubmitRequest(request_id=kw.pop("request_id", ""), max_tokens=max_tokens, prompt=prompt, **kw)


async def wait_for(cond, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def test_stream_tokens_then_one_final(fake_engine: FakeEngine) -> None:
    async with running_core(fake_engine.url) as core:
        events = await collect(core, req(tagged(5), max_tokens=5))
    chunks = [e for e in events if isinstance(e, TokenChunk)]
    finals = [e for e in events if isinstance(e, FinalResult)]
    assert sum(c.tokens for c in chunks) == 5 and "".join(c.text for c in chunks) == "xxxxx"
    assert len(finals) == 1 and events[-1] is finals[0]
    f = finals[0]
    assert (f.finish_reason, f.completion_tokens, f.prompt_tokens) == ("length", 5, 3)
    assert f.scheduling.score == -5.0 and f.scheduling.policy == "ltr"
    assert f.scheduling.predictor_version == "tagged-v1"
    assert f.scheduling.predicted_output_tokens is None  # the predictor has no calibration
    assert 0 <= f.ttft_s <= f.total_s
    assert fake_engine.received[0]["model"] == "scripted-model"  # discovered from /v1/models


async def _ordered_run(engine: FakeEngine, policy: str, lengths: list[int], **cfg) -> list[int]:
    """Hold the engine with one request, queue the rest, release: the engine sees admission order."""
    engine.gate = asyncio.Event()
    async with running_core(engine.url, policy=policy, max_concurrency=1, **cfg) as core:
        first = asyncio.create_task(collect(core, req(tagged(1, "blocker"), max_tokens=1)))
        await wait_for(lambda: engine.running == 1)
        tasks = []
        for n in lengths:
            tasks.append(
                asyncio.create_task(collect(core, req(tagged(n), max_tokens=2, expected_output_tokens=n)))
            )
            k = len(tasks)
            await wait_for(lambda k=k: len(core.queue) == k)
        engine.gate.set()
        await asyncio.gather(first, *tasks)
    return [int(p.split()[0][4:]) for p in engine.prompts()[1:]]


async def test_ltr_admits_shortest_predicted_first(fake_engine: FakeEngine) -> None:
    assert await _ordered_run(fake_engine, "ltr", [50, 10, 40, 20, 30]) == [10, 20, 30, 40, 50]


async def test_fcfs_admits_in_arrival_order(fake_engine: FakeEngine) -> None:
    assert await _ordered_run(fake_engine, "fcfs", [50, 10, 40, 20, 30]) == [50, 10, 40, 20, 30]


async def test_oracle_uses_expected_output_tokens(fake_engine: FakeEngine) -> None:
    assert await _ordered_run(fake_engine, "oracle", [30, 5, 20]) == [5, 20, 30]


async def test_higher_band_first_then_rank(fake_engine: FakeEngine) -> None:
    fake_engine.gate = asyncio.Event()
    async with running_core(fake_engine.url, max_concurrency=1, priority_bands=[0, 1]) as core:
        first = asyncio.create_task(collect(core, req(tagged(1), max_tokens=1)))
        await wait_for(lambda: fake_engine.running == 1)
        tasks = []
        for n, band in [(5, 0), (40, 1), (30, 1), (2, 0)]:
            tasks.append(asyncio.create_task(collect(core, req(tagged(n), max_tokens=1, priority=band))))
            k = len(tasks)
            await wait_for(lambda k=k: len(core.queue) == k)
        snap = core.snapshot(include_entries=True)
        assert snap.per_band == {0: 2, 1: 2}
        assert [e.priority for e in snap.entries] == [1, 1, 0, 0]
        fake_engine.gate.set()
        await asyncio.gather(first, *tasks)
    assert [int(p.split()[0][4:]) for p in fake_engine.prompts()[1:]] == [30, 40, 2, 5]


async def test_starved_request_promoted_ahead_of_shorter_ones(fake_engine: FakeEngine) -> None:
    fake_engine.token_delay_s = 0.01
    async with running_core(fake_engine.url, max_concurrency=1, starvation_threshold="150ms") as core:
        long_task = None
        shorts = []
        for i in range(40):  # a steady stream of short requests, one long one early on
            shorts.append(asyncio.create_task(collect(core, req(tagged(1), max_tokens=2))))
            if i == 1:
                long_task = asyncio.create_task(collect(core, req(tagged(500, "long"), max_tokens=2)))
            await asyncio.sleep(0.01)
        assert long_task is not None
        final = (await long_task)[-1]
        await asyncio.gather(*shorts)
    assert final.scheduling.promoted
    assert final.scheduling.queue_wait_s < 0.15 + 0.2  # threshold + one short request's service
    assert core.queue.promotions_total >= 1
    order = [p.split()[1] for p in fake_engine.prompts()]
    assert order.index("long") < len(order) - 5  # not left to the end


async def test_queue_full_is_resource_exhausted(fake_engine: FakeEngine) -> None:
    fake_engine.gate = asyncio.Event()
    async with running_core(fake_engine.url, max_concurrency=1, max_queue=2) as core:
        tasks = [asyncio.create_task(collect(core, req(tagged(1))))]
        await wait_for(lambda: core.in_flight == 1)
        tasks += [asyncio.create_task(collect(core, req(tagged(1)))) for _ in range(2)]
        await wait_for(lambda: len(core.queue) == 2)
        with pytest.raises(SidecarError) as err:
            await collect(core, req(tagged(1)))
        assert err.value.code is ErrorCode.RESOURCE_EXHAUSTED and "full" in err.value.message
        fake_engine.gate.set()
        results = await asyncio.gather(*tasks)
    assert all(isinstance(r[-1], FinalResult) for r in results)


async def test_chat_request_goes_to_chat_endpoint(fake_engine: FakeEngine) -> None:
    async with running_core(fake_engine.url) as core:
        events = await collect(
            core,
            SubmitRequest(request_id="c1", max_tokens=3, messages=[{"role": "user", "content": "len=3 hi"}]),
        )
    assert events[-1].completion_tokens == 3 and events[-1].scheduling.score == -3.0
    assert fake_engine.received[0]["messages"] == [{"role": "user", "content": "len=3 hi"}]


async def test_cancel_while_queued_removes_from_queue(fake_engine: FakeEngine) -> None:
    fake_engine.gate = asyncio.Event()
    async with running_core(fake_engine.url, max_concurrency=1) as core:
        first = asyncio.create_task(collect(core, req(tagged(1, "first"))))
        await wait_for(lambda: core.in_flight == 1)
        queued = asyncio.create_task(collect(core, req(tagged(1, "victim"), request_id="victim")))
        await wait_for(lambda: "victim" in core.queue)
        queued.cancel()
        await wait_for(lambda: len(core.queue) == 0)
        fake_engine.gate.set()
        await first
        ok = await collect(core, req(tagged(1, "after")))
    assert isinstance(ok[-1], FinalResult)
    assert not any("victim" in p for p in fake_engine.prompts())


async def test_closing_stream_aborts_engine_request(fake_engine: FakeEngine) -> None:
    fake_engine.token_delay_s = 0.02
    async with running_core(fake_engine.url) as core:
        gen = core.submit(req(tagged(100, "abortme"), max_tokens=100))
        got = [await gen.__anext__() for _ in range(3)]
        await gen.aclose()
        assert all(isinstance(e, TokenChunk) for e in got)
        await wait_for(lambda: fake_engine.running == 0 and core.in_flight == 0)
        assert core.snapshot().in_flight == 0
    assert fake_engine.completed == []


async def test_engine_down_is_unavailable_within_seconds(fake_engine: FakeEngine) -> None:
    from ltr_sidecar.devtools.ports import free_port

    async with running_core(f"http://127.0.0.1:{free_port()}") as core:
        assert not core.ready
        start = time.monotonic()
        with pytest.raises(SidecarError) as err:
            await collect(core, req(tagged(1)))
        assert time.monotonic() - start < 5
        assert err.value.code is ErrorCode.UNAVAILABLE and "unavailable" in err.value.message
        assert "127.0.0.1" not in err.value.message  # no internal address reaches a client
        assert core.in_flight == 0


async def test_engine_failure_mid_stream_ends_with_error_final(fake_engine: FakeEngine) -> None:
    fake_engine.fail_after = 2
    async with running_core(fake_engine.url) as core:
        events = await collect(core, req(tagged(5), max_tokens=5))
    assert all(isinstance(e, TokenChunk) for e in events[:-1]) and isinstance(events[-1], FinalResult)
    assert sum(e.tokens for e in events[:-1]) == 2 and events[-1].completion_tokens == 2
    assert events[-1].finish_reason == "error" and "exploded" in events[-1].error


async def test_vendor_fields_dropped_when_engine_rejects_them(fake_engine: FakeEngine) -> None:
    fake_engine.reject_fields = ("ignore_eos", "top_k")
    async with running_core(fake_engine.url) as core:
        events = await collect(
            core,
            req(tagged(2), max_tokens=2, sampling=SamplingParams(ignore_eos=True, top_k=5, temperature=0.5)),
        )
        assert core.engine.vendor_fields is False
    assert events[-1].finish_reason == "length"
    assert fake_engine.received[0]["temperature"] == 0.5 and "ignore_eos" not in fake_engine.received[0]


async def test_deadline_while_queued(fake_engine: FakeEngine) -> None:
    fake_engine.gate = asyncio.Event()
    async with running_core(fake_engine.url, max_concurrency=1) as core:
        first = asyncio.create_task(collect(core, req(tagged(1))))
        await wait_for(lambda: core.in_flight == 1)
        with pytest.raises(SidecarError) as err:
            await collect(core, req(tagged(1), deadline=time.time() + 0.1))
        assert err.value.code is ErrorCode.DEADLINE_EXCEEDED and len(core.queue) == 0
        fake_engine.gate.set()
        await first


async def test_scoring_is_batched_across_concurrent_arrivals(fake_engine: FakeEngine) -> None:
    predictor = TaggedPredictor(delay_s=0.02)
    async with running_core(
        fake_engine.url, predictor=predictor, max_concurrency=64, scoring_window_ms=5
    ) as core:
        await asyncio.gather(*(collect(core, req(tagged(i % 7 + 1), max_tokens=1)) for i in range(40)))
    assert sum(predictor.calls) == 40
    assert len(predictor.calls) <= 8 and max(predictor.calls) >= 5


async def test_rank_scores_without_queueing(fake_engine: FakeEngine) -> None:
    async with running_core(fake_engine.url) as core:
        scores, version = await core.rank([tagged(30), tagged(3)])
        with pytest.raises(SidecarError) as err:
            await core.rank([])
    assert scores == [-30.0, -3.0] and version == "tagged-v1"
    assert err.value.code is ErrorCode.INVALID_ARGUMENT and fake_engine.received == []


async def test_drain_finishes_queued_and_in_flight(fake_engine: FakeEngine) -> None:
    fake_engine.token_delay_s = 0.01
    async with running_core(fake_engine.url, max_concurrency=1) as core:
        tasks = [asyncio.create_task(collect(core, req(tagged(i + 1), max_tokens=5))) for i in range(4)]
        await wait_for(lambda: len(core.queue) == 3)
        stop = asyncio.create_task(core.stop(grace_s=10))
        await wait_for(lambda: core.draining)
        with pytest.raises(SidecarError) as err:
            await collect(core, req(tagged(1)))
        assert err.value.code is ErrorCode.UNAVAILABLE and "draining" in err.value.message
        results = await asyncio.gather(*tasks)
        await stop
    assert [r[-1].finish_reason for r in results] == ["length"] * 4


async def test_drain_grace_over_aborts_the_rest(fake_engine: FakeEngine) -> None:
    fake_engine.gate = asyncio.Event()  # never released: nothing can finish
    async with running_core(fake_engine.url, max_concurrency=1) as core:
        running = asyncio.create_task(collect(core, req(tagged(1))))
        queued = asyncio.create_task(collect(core, req(tagged(2))))
        await wait_for(lambda: len(core.queue) == 1 and core.in_flight == 1)
        await core.stop(grace_s=0.2)
        assert (await running)[-1].finish_reason == "cancelled"
        with pytest.raises(SidecarError) as err:
            await queued
        assert err.value.code is ErrorCode.UNAVAILABLE


async def test_hot_reload_keeps_queued_scores_and_failed_load_keeps_old(
    fake_engine: FakeEngine, tmp_path: Path
) -> None:
    from ltr_sidecar.predictor import PromptLengthPredictor

    PromptLengthPredictor(version="plen-v2").save(tmp_path / "v2")
    fake_engine.gate = asyncio.Event()
    async with running_core(fake_engine.url, max_concurrency=1) as core:
        first = asyncio.create_task(collect(core, req(tagged(1))))
        await wait_for(lambda: core.in_flight == 1)
        queued = asyncio.create_task(collect(core, req(tagged(9), request_id="q")))
        await wait_for(lambda: "q" in core.queue)
        status = await core.load_predictor(path=str(tmp_path / "v2"))
        assert status.version == "plen-v2" and status.backbone == "prompt-length" and status.last_error == ""
        with pytest.raises(SidecarError) as err:
            await core.load_predictor(path=str(tmp_path / "missing"))
        assert err.value.code in (ErrorCode.FAILED_PRECONDITION, ErrorCode.NOT_FOUND)
        status = core.predictor_status()
        assert status.version == "plen-v2" and "missing" in status.last_error
        fake_engine.gate.set()
        await first
        final = (await queued)[-1]
        new = (await collect(core, req("abc")))[-1]
    assert final.scheduling.score == -9.0 and final.scheduling.predictor_version == "tagged-v1"
    assert new.scheduling.score == -3.0 and new.scheduling.predictor_version == "plen-v2"


async def test_no_loadable_predictor_serves_fcfs(
    fake_engine: FakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ltr_sidecar.server.predictor_slot as slot_module

    monkeypatch.setattr(slot_module, "bundled_predictor_path", lambda: tmp_path / "no-bundle")
    from ltr_sidecar.server.config import validate
    from ltr_sidecar.server.core import SchedulerCore

    core = SchedulerCore(
        validate(
            {"engine_url": fake_engine.url, "predictor_dir": str(tmp_path / "nope"), "max_concurrency": 1}
        )
    )
    await core.start()
    try:
        status = core.predictor_status()
        assert status.version == "" and status.fallback_fcfs and "nope" in status.last_error
        assert core.snapshot().policy == "fcfs" and core.ready
        events = await collect(core, req("hello", max_tokens=2))
        assert events[-1].finish_reason == "length" and events[-1].scheduling.predictor_version == ""
        assert events[-1].scheduling.predicted_output_tokens is None
    finally:
        await core.stop(1.0)


async def test_metrics_and_traces_recorded(fake_engine: FakeEngine, tmp_path: Path) -> None:
    from ltr_sidecar.data.traces import iter_trace_records
    from ltr_sidecar.server.metrics import SidecarMetrics
    from ltr_sidecar.server.traces import TraceRecorder

    metrics = SidecarMetrics()
    traces = TraceRecorder(tmp_path, record_prompts=True)
    async with running_core(fake_engine.url, metrics=metrics, traces=traces, record_prompts=True) as core:
        for n in (3, 1, 2):
            await collect(core, req(tagged(n), max_tokens=n))
        await collect(core, req(tagged(2, "secret"), max_tokens=2, no_trace=True))
        with pytest.raises(SidecarError):
            await collect(core, req("late", max_tokens=2, deadline=time.time() - 1))
    traces.close()
    body = metrics.render()[0].decode()
    assert 'ltr_requests_total{outcome="ok"} 4.0' in body
    assert 'ltr_requests_total{outcome="deadline"} 1.0' in body
    assert 'ltr_predictor_info{backbone="test-tagged",version="tagged-v1"} 1.0' in body
    records = list(iter_trace_records(tmp_path))
    assert [r["output_tokens"] for r in records] == [3, 1, 2, 2]
    assert records[0]["prompt"] == tagged(3) and records[0]["score"] == -3.0 and "prompt" not in records[3]
    assert records[0]["predictor_version"] == "tagged-v1" and records[0]["model"] == "scripted-model"


async def test_default_config_loads_the_bundled_fast_ranker(fake_engine: FakeEngine, tmp_path: Path) -> None:
    """A real artifact end to end: no predictor configured → the bundled fast ranker scores requests."""
    from ltr_sidecar.server.config import validate
    from ltr_sidecar.server.core import SchedulerCore

    core = SchedulerCore(
        validate(
            {"engine_url": fake_engine.url, "predictor_dir": str(tmp_path / "broken"), "max_concurrency": 1}
        )
    )
    await core.start()
    try:
        status = core.predictor_status()
        assert status.backbone == "fast" and status.version and not status.fallback_fcfs
        assert "broken" in status.last_error  # the configured dir failed; the bundled default serves
        haiku = "Write a haiku about rain."
        essay = "Write a 2000 word essay on the history of Rome, with sources."
        scores, version = await core.rank([essay, haiku])
        assert version == status.version and scores[1] > scores[0], scores  # higher = shorter
        final = (await collect(core, req(haiku, max_tokens=2)))[-1]
        assert final.scheduling.predictor_version == status.version
        assert final.scheduling.score == pytest.approx(scores[1], rel=1e-5)
        predicted = final.scheduling.predicted_output_tokens  # the bundled artifact is calibrated
        assert predicted is not None and predicted > 0
    finally:
        await core.stop(1.0)


async def test_engine_api_chat_sends_prompts_as_user_messages(fake_engine: FakeEngine) -> None:
    async with running_core(fake_engine.url, engine_api="chat") as core:
        events = await collect(core, req(tagged(2), max_tokens=2))
    assert events[-1].completion_tokens == 2 and "".join(e.text for e in events[:-1]) == "xx"
    assert fake_engine.received[0]["messages"] == [{"role": "user", "content": tagged(2)}]


class _BrokenPredictor:
    version, backbone = "broken-v1", "test-broken"

    def score(self, prompts):
        raise RuntimeError("weights on fire")


async def test_predictor_exception_scores_zero_and_serves(fake_engine: FakeEngine) -> None:
    async with running_core(fake_engine.url, predictor=_BrokenPredictor()) as core:
        final = (await collect(core, req(tagged(2), max_tokens=2)))[-1]
    assert final.finish_reason == "length" and final.scheduling.score == 0.0
    assert final.scheduling.predictor_version == ""


async def test_predicted_tokens_gauge_and_token_histograms(fake_engine: FakeEngine) -> None:
    from ltr_sidecar.server.metrics import SidecarMetrics

    metrics = SidecarMetrics()

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    fake_engine.gate = asyncio.Event()
    pred = CalibratedTaggedPredictor()
    async with running_core(fake_engine.url, predictor=pred, metrics=metrics, max_concurrency=1) as core:
        first = asyncio.create_task(collect(core, req(tagged(5, "first"), max_tokens=5)))
        await wait_for(lambda: core.in_flight == 1)
        assert value("ltr_queue_predicted_tokens") == 0  # admitted at once: nothing waits
        tasks = {}
        for n in (10, 20, 30):
            tasks[n] = asyncio.create_task(collect(core, req(tagged(n), max_tokens=2, request_id=f"r{n}")))
            await wait_for(lambda n=n: f"r{n}" in core.queue)
        assert value("ltr_queue_predicted_tokens") == 60
        tasks[20].cancel()  # a cancelled request leaves the sum
        await wait_for(lambda: len(core.queue) == 2)
        assert value("ltr_queue_predicted_tokens") == 40
        fake_engine.gate.set()
        finals = [(await t)[-1] for t in (first, tasks[10], tasks[30])]
        assert value("ltr_queue_predicted_tokens") == 0 and value("ltr_queue_size") == 0
    assert [f.scheduling.predicted_output_tokens for f in finals] == [5.0, 10.0, 30.0]
    assert value("ltr_request_predicted_output_tokens_count") == 3
    assert value("ltr_request_predicted_output_tokens_sum") == 45
    assert value("ltr_request_output_tokens_count") == 3 and value("ltr_request_output_tokens_sum") == 9
    assert value("ltr_request_output_tokens_bucket", le="8.0") == 3


class _BadCalibrationPredictor(TaggedPredictor):
    meta = {"calibration": {"unit": "tokens", "xs": [0.0, 1.0], "ys": [1.0, 2.0]}}  # noqa: RUF012


async def test_a_malformed_calibration_in_code_is_ignored(fake_engine: FakeEngine) -> None:
    async with running_core(fake_engine.url, predictor=_BadCalibrationPredictor()) as core:
        final = (await collect(core, req(tagged(2), max_tokens=2)))[-1]
    assert final.finish_reason == "length" and final.scheduling.score == -2.0
    assert final.scheduling.predicted_output_tokens is None
