"""Replay a workload through the REAL sidecar (gRPC, `ltr.v1`) to a real engine, one policy at a time.

Each request is sent at its arrival time with `max_tokens` = its true output length and
`ignore_eos` (the paper's replay method), so every policy generates exactly the same tokens and only
the order differs. Timings are taken at the client: arrival = send time, first token = first
streamed chunk, gaps between chunks, finish = final message.

The sidecar (`SidecarApp`: core + gRPC server) runs in this process, in the client's event loop,
restarted per policy; the engine is started once (`--engine local`: the tiny CPU engine) and shared
by all policies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from ltr.v1 import scheduler_pb2 as pb
from ltr.v1 import scheduler_pb2_grpc as pb_grpc
from ltr_sidecar.bench import report
from ltr_sidecar.bench.metrics import RequestResult, add_ratios, average_metrics, summarize
from ltr_sidecar.bench.policies import LTR, BenchPolicy
from ltr_sidecar.bench.workload import WorkItem
from ltr_sidecar.data.datasets import Example

T = TypeVar("T")
LOCAL_ENGINE = "local tiny engine (transformers serve, CPU)"
# Bound the engine's KV cache: by default `transformers serve --continuous-batching` sizes it from free
# RAM (measured: ~14 GB resident for the 1 M-parameter tiny model), which can OOM a small machine.
OK_FINISH = (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_STOP)


async def replay_one(
    stub: pb_grpc.SchedulerStub, item: WorkItem, t0: float, send_expected: bool, timeout_s: float
) -> RequestResult:
    """Send one request at `t0 + item.arrival_s` and time its stream (clock: perf_counter - t0)."""
    await asyncio.sleep(max(0.0, t0 + item.arrival_s - time.perf_counter()))
    sent = time.perf_counter() - t0
    req = pb.GenerateRequest(
        request_id=item.request_id,
        prompt=item.prompt,
        max_tokens=item.output_tokens,
        sampling=pb.SamplingParams(ignore_eos=True, temperature=0.0),
    )
    if send_expected:
        req.expected_output_tokens = item.output_tokens
    first: float | None = None
    last: float | None = None
    max_gap = 0.0
    tokens = 0
    error = "stream ended without a final message"
    try:
        async for msg in stub.Generate(req, timeout=timeout_s):
            now = time.perf_counter() - t0
            if msg.tokens > 0 or msg.text:
                tokens += max(1, msg.tokens)
                if first is None:
                    first = now
                elif last is not None:
                    max_gap = max(max_gap, now - last)
                last = now
            if msg.HasField("final"):
                tokens = msg.final.usage.completion_tokens or tokens
                reason = pb.FinishReason.Name(msg.final.finish_reason)
                error = "" if msg.final.finish_reason in OK_FINISH else f"finish_reason {reason}"
    except grpc.aio.AioRpcError as exc:
        error = f"{exc.code().name}: {exc.details()}"
    end = time.perf_counter() - t0
    # An engine may stream no text at all (e.g. tokens that decode to ""): the request still ran to
    # its length; its first token is then only known to be no later than the end.
    return RequestResult(
        item.request_id,
        sent,
        first if first is not None else end,
        end,
        tokens or item.output_tokens,
        max_gap,
        ok=not error,
        error=error,
    )


async def replay(
    address: str, items: Sequence[WorkItem], send_expected: bool = False, timeout_s: float = 600.0
) -> list[RequestResult]:
    """Replay `items` against the sidecar at `address` (host:port); one result per item."""
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
        stub = pb_grpc.SchedulerStub(channel)
        t0 = time.perf_counter() + 0.05
        return list(await asyncio.gather(*(replay_one(stub, w, t0, send_expected, timeout_s) for w in items)))


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, except that SIGINT/SIGTERM cancel the coroutine cleanly (streams and channels
    closed inside the loop) and then raise KeyboardInterrupt to the caller."""
    interrupted = False

    async def guarded() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def stop() -> None:
            nonlocal interrupted
            interrupted = True
            if task is not None:
                task.cancel()

        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        installed = []
        for sig in previous:
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(sig, stop)
                installed.append(sig)
        try:
            return await coro
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
                signal.signal(sig, previous[sig])

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise


@contextlib.asynccontextmanager
async def local_sidecar(overrides: dict[str, Any], predictor: Any = None) -> AsyncIterator[str]:
    """A real sidecar (`SidecarApp`: core + gRPC server) on 127.0.0.1 in this event loop; yields its
    gRPC address and drains it on exit."""
    from ltr_sidecar.server.app import SidecarApp
    from ltr_sidecar.server.config import load_config

    config = load_config(
        None,
        {
            "host": "127.0.0.1",
            "grpc_port": 0,
            "http_port": 0,
            "drain_grace_s": 2.0,
            "max_queue": 100_000,
            **overrides,
        },
    )
    app = SidecarApp(config, predictor=predictor)
    try:
        await app.start()
        yield f"127.0.0.1:{app.grpc_port}"
    finally:
        await app.stop(1.0)


@contextlib.contextmanager
def engine_for(spec: str, log: Callable[[str], None], model: str = "") -> Iterator[tuple[str, str]]:
    """(engine URL, model name): a tiny local engine for `local` (stopped on exit), else `spec` as URL."""
    if spec != "local":
        if not spec.startswith(("http://", "https://")):
            raise ValueError(f"--engine must be sim, local or an http(s):// URL, got {spec!r}")
        yield spec.rstrip("/"), model
        return
    from ltr_sidecar.devtools.tiny_engine import build_tiny_model, start_engine

    tmp = tempfile.mkdtemp(prefix="ltr-bench-engine-")
    engine = None
    try:
        log("engine: building the tiny model ...")
        model_dir = build_tiny_model(Path(tmp) / "model")
        log("engine: starting transformers serve --continuous-batching (CPU) ...")
        engine = start_engine(model_dir, threads=1)
        log(f"engine: ready at {engine.url}")
        yield engine.url, engine.model
    finally:
        if engine is not None:
            engine.stop()
            with contextlib.suppress(OSError):
                engine.log_path.unlink()
        shutil.rmtree(tmp, ignore_errors=True)


async def warm_up(address: str, items: Sequence[WorkItem], n: int) -> None:
    """A few short requests so first-request costs (connections, caches) hit no policy."""
    if n <= 0 or not items:
        return
    short = [
        WorkItem(f"warm{i}", w.prompt, min(8, w.output_tokens), 0.0, w.prompt_tokens)
        for i, w in enumerate(items[:n])
    ]
    for res in await replay(address, short[:1]) + await replay(address, short[1:]):
        if not res.ok:
            print(f"warm-up request failed: {res.error}", file=sys.stderr)


def run_policy(
    engine_url: str,
    model: str,
    policy: BenchPolicy,
    predictor: Any,
    items: Sequence[WorkItem],
    max_concurrency: int,
    starvation_threshold_s: float,
    warmup: int,
) -> list[RequestResult]:
    """Start a sidecar with this policy, replay `items` through it, stop it (one event loop)."""
    overrides = {
        "engine_url": engine_url,
        "model": model,
        "policy": policy.queue_policy,
        "max_concurrency": max_concurrency,
        "starvation_threshold": starvation_threshold_s if policy.starvation else 0,
    }

    async def go() -> list[RequestResult]:
        async with local_sidecar(overrides, predictor) as address:
            await warm_up(address, items, warmup)
            return await replay(address, items, send_expected=policy.queue_policy == "oracle")

    return run_async(go())


def run_real(
    args: argparse.Namespace,
    policies: list[BenchPolicy],
    preds: dict[str, Any],
    examples: list[Example],
    config: dict[str, Any],
    out_dir: Path,
    make_workload: Callable[[argparse.Namespace, list[Example], float], list[WorkItem]],
    log: Callable[[str], None],
) -> int:
    """`ltr bench --engine local|URL`: every policy over the same workload; report + JSON."""
    rate = args.rate
    threshold = 5.0 if args.starvation_threshold is None else args.starvation_threshold
    items = make_workload(args, examples, rate)
    config.update(
        rate=rate,
        requests=len(items),
        starvation_threshold_s=threshold,
        max_concurrency=args.max_concurrency,
        output_tokens_total=sum(w.output_tokens for w in items),
    )
    log(f"workload: {len(items)} requests at {rate:g} req/s, {config['output_tokens_total']} output tokens")
    rounds = max(1, args.rounds)
    per_round: dict[str, list[list[RequestResult]]] = {p.name: [] for p in policies}
    with engine_for(args.engine, log, args.engine_model) as (url, model):
        config["engine_url"] = url if args.engine != "local" else LOCAL_ENGINE
        for rnd in range(rounds):
            # rotate the order each round so slow drifts of machine load hit every policy alike
            for pol in policies[rnd % len(policies) :] + policies[: rnd % len(policies)]:
                predictor = preds.get(pol.scorer or LTR)  # fcfs/oracle still score: equal overhead
                started = time.perf_counter()
                res = run_policy(
                    url, model, pol, predictor, items, args.max_concurrency, threshold, args.warmup
                )
                per_round[pol.name].append(res)
                failed = [r for r in res if not r.ok]
                log(
                    f"round {rnd + 1}/{rounds} policy {pol.name}: {time.perf_counter() - started:.1f}s"
                    + (f", {len(failed)} FAILED requests, e.g. {failed[0].error}" if failed else "")
                )
    metrics = {name: average_metrics([summarize(r) for r in runs]) for name, runs in per_round.items()}
    add_ratios(metrics)
    results = {name: [r for run in runs for r in run] for name, runs in per_round.items()}
    config["rounds"] = rounds
    config["per_round_mean_per_token_latency_s"] = {
        name: [summarize(run)["mean_per_token_latency_s"] for run in runs] for name, runs in per_round.items()
    }
    name = args.name or "replay"
    text = (
        f"# Real-engine replay: {config['engine_url']}, {config['data']}\n\n"
        f"{len(items)} requests, Poisson {rate:g} req/s, max_concurrency {args.max_concurrency}, "
        f"starvation threshold {threshold:g}s, metrics averaged over {rounds} round(s) "
        f"(policy order rotated per round)\n\n{report.markdown_table(metrics)}\n"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)
    if not args.no_plots:
        p = report.plot_cdf(
            results, out_dir / f"{name}-cdf.png", title=f"Real engine replay at {rate:g} req/s"
        )
        log(f"plot: {p}")
    log(f"table: {out_dir / f'{name}.md'}")
    if args.json_out:
        report.write_json(args.json_out, metrics, config)
        log(f"json: {args.json_out}")
    return 0 if all(m["failed"] == 0 for m in metrics.values()) else 1
