"""Closed loop end to end, without a cluster (issue 8 acceptance):

a real sidecar (SidecarApp: SchedulerCore + gRPC) in front of the real tiny `transformers serve` engine
serves a replay of the shipped sample while a deliberately weak predictor (v1) is loaded → it records
traces → `ltr predictor retrain` (the real CLI) publishes v2, which ranks held-out replayed prompts far
better → v2 is hot-loaded over gRPC while requests are queued and arriving (nothing lost, nothing
duplicated, queued requests keep their arrival scores, new ones are scored by v2) → rollback to v1 the
same way. Too few samples → exit 3 / insufficient_data.

Replay: max_tokens = the recorded answer length mapped monotonically onto [1, 48] tokens; the tiny
engine cannot emit EOS, so output tokens = max_tokens and the traces carry the ranking signal.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest

from ltr.cli import main as ltr_main
from ltr.v1 import scheduler_pb2 as pb
from ltr.v1 import scheduler_pb2_grpc as pb_grpc
from ltr_sidecar.data.datasets import Example
from ltr_sidecar.data.traces import TRACE_FIELDS, TraceRecord, TraceStats, iter_trace_records
from ltr_sidecar.devtools.tiny_engine import EngineProcess
from ltr_sidecar.predictor import load_predictor
from ltr_sidecar.predictor.ops.evaluate import evaluate
from ltr_sidecar.predictor.runtime.store import PredictorStore
from ltr_sidecar.server.app import SidecarApp
from ltr_sidecar.server.config import SidecarConfig, validate
from ltr_sidecar.server.traces import TraceRecorder
from tests.support.loop import FAST_CPU, Replay, submit
from tests.support.sidecar import admin_metadata, write_token

N_REPLAY = 300  # train.jsonl prompts replayed to record the traces the retrain learns from
N_DURING_RETRAIN = 20  # requests served while the retrain job runs (no_trace: not learnt from)
SEGMENTS = (60, 60, 40)  # held-out arrivals: on v1, after the upgrade to v2, after the rollback to v1
MAX_CONCURRENCY = 16
ARRIVAL_GAP_S = 0.003
SCORE_TOL = 1e-4


ADMIN_TOKEN = "closed-loop-admin-token"


def loop_config(engine_url: str, store: PredictorStore, trace_dir: Path) -> SidecarConfig:
    return validate(
        {
            "engine_url": engine_url,
            "host": "127.0.0.1",
            "grpc_port": 0,
            "http_port": 0,
            "admin_port": 0,
            "admin_host": "127.0.0.1",
            "admin_token_file": str(write_token(trace_dir.parent / "admin" / "token", ADMIN_TOKEN)),
            "predictor_store": str(store.root),
            "predictor_version": "v1",
            "trace_dir": str(trace_dir),
            "record_prompts": True,
            "max_concurrency": MAX_CONCURRENCY,
            "starvation_threshold": 0,
            "scoring_window_ms": 1,
        }
    )


def metric(app: SidecarApp, name: str, **labels: str) -> float:
    value = app.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def settle(app: SidecarApp, submitted: int, timeout_s: float = 120.0) -> None:
    """Wait until all `submitted` requests have been scored and pushed into the queue (exact: the
    queued counter only moves after scoring)."""
    deadline = time.monotonic() + timeout_s
    while (queued := metric(app, "ltr_requests_queued_total", priority="0")) < submitted:
        assert time.monotonic() < deadline, f"{queued:.0f} of {submitted} requests queued after {timeout_s}s"
        await asyncio.sleep(0.005)


async def feed(
    stub: pb_grpc.SchedulerStub, replay: Replay, rows: list[dict[str, Any]], ids: list[str]
) -> None:
    for rid, row in zip(ids, rows, strict=True):
        submit(stub, replay, rid, row)
        await asyncio.sleep(ARRIVAL_GAP_S)


def assert_each_completed_once(replay: Replay, ids: list[str], rows: list[dict[str, Any]]) -> None:
    if replay.errors:
        codes = Counter(err.split(":")[0] for err in replay.errors.values())
        first = next(iter(replay.errors.items()))
        pytest.fail(f"{len(replay.errors)} streams failed {dict(codes)}, e.g. {first}")
    assert replay.final_counts() == Counter(dict.fromkeys(ids, 1))  # zero lost, zero duplicated
    for rid, row in zip(ids, rows, strict=True):
        final = replay.finals[rid][0]
        assert final.finish_reason == pb.FINISH_REASON_LENGTH, rid
        assert final.usage.completion_tokens == row["max_tokens"], rid


def read_traces(trace_dir: Path) -> tuple[list[dict[str, Any]], TraceStats]:
    stats = TraceStats()
    return list(iter_trace_records(trace_dir, stats)), stats


@pytest.mark.slow
async def test_closed_loop_traces_retrain_hot_reload_rollback(
    tiny_engine: EngineProcess,
    weak_store: PredictorStore,
    sample_rows: dict[str, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    store, trace_dir = weak_store, tmp_path / "traces"
    train_rows = sample_rows["train"][:N_REPLAY]
    side_rows = sample_rows["train"][N_REPLAY : N_REPLAY + N_DURING_RETRAIN]
    held_rows = sample_rows["heldout"][: sum(SEGMENTS)]
    app = SidecarApp(loop_config(tiny_engine.url, store, trace_dir))
    await app.start()
    try:
        assert app.core.predictor_version == "v1"  # the weak version named in the config serves
        assert app.admin is not None
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{app.admin.port}") as admin_channel,
        ):
            stub, admin = pb_grpc.SchedulerStub(channel), pb_grpc.PredictorAdminStub(admin_channel)

            # 1. a replay served by v1 records traces
            replay = Replay()
            train_ids = [f"train-{i:04d}" for i in range(N_REPLAY)]
            await feed(stub, replay, train_rows, train_ids)
            await replay.wait()
            assert_each_completed_once(replay, train_ids, train_rows)
            assert {replay.finals[r][0].scheduling.predictor_version for r in train_ids} == {"v1"}
            await asyncio.to_thread(app.traces.flush)
            records, stats = read_traces(trace_dir)
            assert stats.corrupt == 0 and len(records) == N_REPLAY
            assert (trace_dir / "traces.jsonl").is_file()
            by_id = {r["request_id"]: r for r in records}
            assert sorted(by_id) == train_ids
            for rid, row in zip(train_ids, train_rows, strict=True):
                rec = by_id[rid]
                assert set(rec) == set(TRACE_FIELDS)
                assert rec["prompt"] == row["prompt"] and rec["output_tokens"] == row["max_tokens"]
                assert (rec["predictor_version"], rec["policy"]) == ("v1", "ltr")
                assert rec["finish_reason"] == "length"
                assert rec["prompt_tokens"] > 0 and rec["model"] == tiny_engine.model
                assert rec["score"] == replay.finals[rid][0].scheduling.score  # same float, end to end

            # 2. the real retrain CLI runs while the sidecar keeps serving (untraced requests)
            result_file = tmp_path / "retrain-result.json"
            argv = [
                "predictor",
                "retrain",
                "--traces",
                str(trace_dir),
                "--store",
                str(store.root),
                "--window",
                "1h",
                "--min-samples",
                "200",
                "--base",
                "v1",
                "--min-kendall-tau",
                "0.2",
                *FAST_CPU,
                "--result-file",
                str(result_file),
                "--quiet",
            ]
            side = Replay()
            started = time.perf_counter()
            job = asyncio.create_task(asyncio.to_thread(ltr_main, argv))
            side_ids = [f"during-retrain-{i:02d}" for i in range(N_DURING_RETRAIN)]
            for rid, row in zip(side_ids, side_rows, strict=True):
                submit(stub, side, rid, row, no_trace=True)
            code = await job
            retrain_wall_s = time.perf_counter() - started
            await side.wait()
            assert_each_completed_once(side, side_ids, side_rows)
            assert {side.finals[r][0].scheduling.predictor_version for r in side_ids} == {"v1"}
            assert code == 0
            result = json.loads(result_file.read_text(encoding="utf-8"))
            assert result["status"] == "published" and result["candidate"] == "v2"
            assert result["current"] == "v1" and result["samples"] == N_REPLAY
            assert result["holdout_samples"] == round(N_REPLAY * 0.2)
            assert result["trace_stats"]["corrupt"] == 0
            assert result["candidate_kendall_tau"] >= 0.2
            assert result["candidate_kendall_tau"] > result["current_kendall_tau"]
            assert [v.version for v in store.list_versions()] == ["v1", "v2"]
            assert store.list_versions()[1].parent == "v1"
            assert app.core.predictor_version == "v1"  # publishing alone never changes what serves

            # 3. hot reload v1 -> v2 under load; 4. rollback v2 -> v1 under load
            live = Replay()
            held_ids = [f"held-{i:03d}" for i in range(len(held_rows))]
            bounds = [0, SEGMENTS[0], SEGMENTS[0] + SEGMENTS[1], sum(SEGMENTS)]
            seg_ids = [held_ids[a:b] for a, b in itertools.pairwise(bounds)]
            seg_rows = [held_rows[a:b] for a, b in itertools.pairwise(bounds)]
            queued_before = metric(app, "ltr_requests_queued_total", priority="0")
            queued_at_swap: list[dict[str, float]] = []
            for seg, target in enumerate(("v2", "v1", None)):
                await feed(stub, live, seg_rows[seg], seg_ids[seg])
                if target is None:
                    break
                await settle(app, int(queued_before) + bounds[seg + 1])
                snap = await stub.GetQueue(pb.GetQueueRequest(include_entries=True, limit=1000))
                queued_at_swap.append({e.request_id: e.score for e in snap.entries})
                assert len(queued_at_swap[-1]) >= 10, "the swap must happen with requests queued"
                status = await admin.LoadPredictor(
                    pb.LoadPredictorRequest(version=target), metadata=admin_metadata(ADMIN_TOKEN)
                )
                assert status.version == target and not status.last_error
                after = await stub.GetQueue(pb.GetQueueRequest(include_entries=True, limit=1000))
                assert after.predictor_version == target
                for e in after.entries:  # still-queued requests kept the score they arrived with
                    if e.request_id in queued_at_swap[-1]:
                        assert e.score == queued_at_swap[-1][e.request_id]
            await live.wait()
            assert_each_completed_once(live, held_ids, held_rows)
            current = await admin.GetPredictor(pb.GetPredictorRequest(), metadata=admin_metadata(ADMIN_TOKEN))
            assert current.version == "v1" and not current.last_error
    finally:
        await app.stop(10)

    # versions and scores per segment, checked against the artifacts themselves
    preds = {v: load_predictor(store.resolve(v)) for v in ("v1", "v2")}
    for ids, rows, version in zip(seg_ids, seg_rows, ("v1", "v2", "v1"), strict=True):
        expected = preds[version].score([r["prompt"] for r in rows])
        for rid, score in zip(ids, expected, strict=True):
            info = live.finals[rid][0].scheduling
            assert info.predictor_version == version, rid
            assert info.score == pytest.approx(score, abs=SCORE_TOL, rel=SCORE_TOL), rid
    version_of = {rid: v for ids, v in zip(seg_ids, ("v1", "v2", "v1"), strict=True) for rid in ids}
    for snapshot in queued_at_swap:
        for rid, score in snapshot.items():  # queued at a swap, admitted after it: arrival score kept
            info = live.finals[rid][0].scheduling
            assert info.predictor_version == version_of[rid] and info.score == score, rid

    # every request counted exactly once, in the metrics and in the traces
    total = N_REPLAY + N_DURING_RETRAIN + sum(SEGMENTS)
    assert metric(app, "ltr_requests_total", outcome="ok") == total
    assert (
        sum(
            metric(app, "ltr_requests_total", outcome=o)
            for o in ("cancelled", "error", "unavailable", "deadline", "rejected_full", "invalid")
        )
        == 0
    )
    records, stats = read_traces(trace_dir)
    assert stats.corrupt == 0
    counts = Counter(r["request_id"] for r in records)
    assert counts == Counter(dict.fromkeys(train_ids + side_ids + held_ids, 1))
    assert all("prompt" not in r for r in records if r["request_id"] in side_ids)  # no_trace honoured

    # τ of the weak and the retrained version on the held-out replayed prompts (never trained on)
    held = [
        Example(prompt=r["prompt"], length=r["output_tokens"])
        for r in records
        if r["request_id"].startswith("held-")
    ]
    assert len(held) == sum(SEGMENTS)
    tau = {v: evaluate(p, held, with_latency=False)["kendall_tau"] for v, p in preds.items()}
    print(
        f"\nclosed loop: retrain wall {retrain_wall_s:.1f} s (training {result['train_seconds']} s) on "
        f"{N_REPLAY} traces; retrain hold-out tau v1 {result['current_kendall_tau']:.4f} -> v2 "
        f"{result['candidate_kendall_tau']:.4f}; held-out replay ({len(held)} prompts) tau v1 "
        f"{tau['v1']:.4f} -> v2 {tau['v2']:.4f}"
    )
    assert tau["v2"] >= 0.3 and tau["v2"] > tau["v1"] + 0.2


def test_retrain_with_too_few_samples_exits_3(
    tmp_path: Path, sample_rows: dict[str, list[dict[str, Any]]]
) -> None:
    trace_dir, store_dir, result_file = tmp_path / "traces", tmp_path / "store", tmp_path / "result.json"
    now = time.time()
    with TraceRecorder(trace_dir) as recorder:
        for i, row in enumerate(sample_rows["train"][:30]):
            recorder.record(
                TraceRecord(
                    timestamp=now - 60 + i,
                    request_id=f"r{i}",
                    prompt=row["prompt"],
                    prompt_tokens=10,
                    score=0.0,
                    output_tokens=row["max_tokens"],
                    predictor_version="",
                    model="tiny",
                    policy="ltr",
                    finish_reason="length",
                )
            )
    with open(trace_dir / "traces.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"request_id": "cut-short", "prom\n')  # a line cut short by a crash
    code = ltr_main(
        [
            "predictor",
            "retrain",
            "--traces",
            str(trace_dir),
            "--store",
            str(store_dir),
            "--min-samples",
            "200",
            "--backbone",
            "fast",
            "--result-file",
            str(result_file),
            "--quiet",
        ]
    )
    assert code == 3
    result = json.loads(result_file.read_text(encoding="utf-8"))
    assert result["status"] == "insufficient_data" and result["candidate"] is None
    assert result["samples"] == 30 and result["trace_stats"]["corrupt"] == 1
    assert "need at least 200" in result["reason"]
    assert PredictorStore(store_dir).list_versions() == []
