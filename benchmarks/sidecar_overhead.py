"""Sidecar overhead benchmark: added time-to-first-token and relay throughput of the HTTP front door.

Three processes on 127.0.0.1:
  * a mock OpenAI-compatible engine that streams tokens as fast as it can (so the sidecar, not the
    engine, is what is measured), one SSE event per token;
  * the real sidecar (`SidecarApp`: core + gRPC + HTTP front door + metrics + trace recording) in
    front of it, with the trivial prompt-length predictor and no micro-batching window, so scoring
    costs one thread-pool hop (reported separately from the sidecar's own `ltr_scoring_seconds`);
  * this process as the client (aiohttp, streaming).

Measured:
  1. TTFT: sequential streamed requests, alternating engine-direct and through-the-sidecar; added
     TTFT = p50(sidecar) − p50(direct), also the p50 of the paired differences.
  2. Relay throughput: C concurrent streams of T tokens through the sidecar; streamed tokens per
     second of wall time and per CPU-second of the sidecar process (= tokens/s per core, from
     /proc/<pid>/stat, Linux only). The same load engine-direct is the client-side ceiling.

Usage: python benchmarks/sidecar_overhead.py [--quick] [--out benchmarks/results]
Writes sidecar_overhead.json and sidecar_overhead.md there and prints the markdown table.
Goals (issue 4): added TTFT ≤ 2 ms p50 excluding scoring; ≥ 20k streamed tokens/s per core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
MODEL = "mock-engine"
TOKEN = " tok"


# -- mock engine -------------------------------------------------------------------------------------
def _engine_event(text: str, finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    obj: dict[str, Any] = {"id": "cmpl-mock", "object": "text_completion", "created": 0, "model": MODEL,
                           "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}
    if usage is not None:
        obj["usage"] = usage
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def _run_engine(port: int, first_token_delay_s: float, events_per_write: int) -> None:
    from aiohttp import web

    token_event = _engine_event(TOKEN)

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        n = int(body.get("max_tokens") or 16)
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        if first_token_delay_s:
            await asyncio.sleep(first_token_delay_s)
        sent = 0
        while sent < n:
            k = min(events_per_write, n - sent)
            await resp.write(token_event * k)
            sent += k
        usage = {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": n + 3}
        await resp.write(_engine_event("", "length", usage) + b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("READY", port, flush=True)
    await _wait_for_sigterm()
    await runner.cleanup()


# -- sidecar -------------------------------------------------------------------------------------------
async def _run_sidecar(engine_url: str, concurrency: int, trace_dir: str) -> None:
    from ltr_sidecar.predictor import PromptLengthPredictor
    from ltr_sidecar.server.app import SidecarApp
    from ltr_sidecar.server.config import SidecarConfig

    config = SidecarConfig(engine_url=engine_url, model=MODEL, policy="ltr", max_concurrency=concurrency,
                           max_queue=100_000, scoring_window_ms=0.0, starvation_threshold=0.0,
                           host="127.0.0.1", grpc_port=0, http_port=0, trace_dir=trace_dir)
    app = SidecarApp(config, predictor=PromptLengthPredictor(version="bench-len"))
    await app.start()
    print("READY", app.http_port, flush=True)
    await _wait_for_sigterm()
    await app.stop(grace_s=2.0)


async def _wait_for_sigterm() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# -- orchestration -------------------------------------------------------------------------------------
class Child:
    """A role of this script in a subprocess; `port` is what it printed after READY."""

    def __init__(self, args: list[str], nice: int = 0) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"{args[:2]} did not start: {line}{err}")
        self.port = int(line.split()[1])

    def cpu_seconds(self) -> float:
        """utime + stime of the process, all threads (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _stream_once(session: aiohttp.ClientSession, base: str, max_tokens: int) -> tuple[float, int]:
    """(seconds to the first token event, token events received) for one streamed completion."""
    body = {"model": MODEL, "prompt": "How long will the answer be?", "max_tokens": max_tokens,
            "stream": True}
    start = time.perf_counter()
    first = 0.0
    tokens = 0
    async with session.post(f"{base}/v1/completions", json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{base} answered {resp.status}: {await resp.text()}")
        async for line in resp.content:
            if line.startswith(b"data: {") and b'"finish_reason":null' in line:
                if tokens == 0:
                    first = time.perf_counter() - start
                tokens += 1
    return first, tokens


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _ttft(engine: str, sidecar: str, n: int) -> dict[str, Any]:
    direct: list[float] = []
    via: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(20):  # warm up connections, code paths and caches
            await _stream_once(session, engine, 4)
            await _stream_once(session, sidecar, 4)
        for _ in range(n):
            direct.append((await _stream_once(session, engine, 4))[0])
            via.append((await _stream_once(session, sidecar, 4))[0])
    diffs = [b - a for a, b in zip(direct, via, strict=True)]
    ms = 1000.0

    def summary(values: list[float]) -> dict[str, float]:
        return {"p50": _pct(values, 0.5) * ms, "p90": _pct(values, 0.9) * ms, "p99": _pct(values, 0.99) * ms}

    return {
        "requests_each": n, "direct_ms": summary(direct), "sidecar_ms": summary(via),
        "added_p50_ms": (_pct(via, 0.5) - _pct(direct, 0.5)) * ms,
        "added_paired_p50_ms": statistics.median(diffs) * ms,
    }


async def _throughput(base: str, streams: int, tokens: int, cpu: Child | None) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(_stream_once(session, base, 8) for _ in range(streams)))  # warm up
        cpu0 = cpu.cpu_seconds() if cpu else 0.0
        t0 = time.perf_counter()
        results = await asyncio.gather(*(_stream_once(session, base, tokens) for _ in range(streams)))
        wall = time.perf_counter() - t0
        cpu_s = (cpu.cpu_seconds() - cpu0) if cpu else 0.0
    total = sum(t for _, t in results)
    if total != streams * tokens:
        raise RuntimeError(f"expected {streams * tokens} tokens, received {total}")
    out: dict[str, Any] = {"streams": streams, "tokens_per_stream": tokens, "tokens": total,
                           "wall_s": wall, "tokens_per_s_wall": total / wall}
    if cpu:
        out["sidecar_cpu_s"] = cpu_s
        out["tokens_per_cpu_s"] = total / cpu_s if cpu_s > 0 else float("inf")
    return out


def _scoring_mean_ms(metrics_text: str) -> tuple[float, int]:
    total = count = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("ltr_scoring_seconds_sum"):
            total = float(line.split()[-1])
        elif line.startswith("ltr_scoring_seconds_count"):
            count = float(line.split()[-1])
    return (1000.0 * total / count if count else 0.0), int(count)


async def _measure(args: argparse.Namespace, engine: Child, sidecar: Child) -> dict[str, Any]:
    engine_url = f"http://127.0.0.1:{engine.port}"
    sidecar_url = f"http://127.0.0.1:{sidecar.port}"
    ttft = await _ttft(engine_url, sidecar_url, args.ttft_requests)
    async with aiohttp.ClientSession() as s, s.get(f"{sidecar_url}/metrics") as r:
        scoring_ms, scored = _scoring_mean_ms(await r.text())
    ttft["scoring_mean_ms"] = scoring_ms
    ttft["scored_requests"] = scored
    ttft["added_p50_excluding_scoring_ms"] = ttft["added_p50_ms"] - scoring_ms
    relay = await _throughput(sidecar_url, args.streams, args.tokens, sidecar)
    direct = await _throughput(engine_url, args.streams, args.tokens, None)
    return {"ttft": ttft, "relay": relay, "direct": direct}


def _markdown(result: dict[str, Any]) -> str:
    t, r, d, env = result["ttft"], result["relay"], result["direct"], result["environment"]
    lines = [
        "# Sidecar overhead (HTTP front door, mock engine)",
        "",
        f"{env['date']} · {env['cpus']} CPU(s) · load average before run {env['loadavg_before']} · "
        f"Python {env['python']} · engine events per write: {env['events_per_write']}",
        "",
        "| measure | engine direct | through sidecar | added / ratio | goal |",
        "|---|---|---|---|---|",
        f"| TTFT p50 (ms) | {t['direct_ms']['p50']:.3f} | {t['sidecar_ms']['p50']:.3f} | "
        f"{t['added_p50_ms']:+.3f} | |",
        f"| TTFT p90 (ms) | {t['direct_ms']['p90']:.3f} | {t['sidecar_ms']['p90']:.3f} | "
        f"{t['sidecar_ms']['p90'] - t['direct_ms']['p90']:+.3f} | |",
        f"| TTFT p99 (ms) | {t['direct_ms']['p99']:.3f} | {t['sidecar_ms']['p99']:.3f} | "
        f"{t['sidecar_ms']['p99'] - t['direct_ms']['p99']:+.3f} | |",
        f"| added TTFT, paired p50 (ms) | | | {t['added_paired_p50_ms']:+.3f} | |",
        f"| scoring stage mean (ms) | | {t['scoring_mean_ms']:.3f} | | |",
        f"| added TTFT p50 excluding scoring (ms) | | | {t['added_p50_excluding_scoring_ms']:+.3f} | ≤ 2 |",
        f"| relay tokens/s (wall, {r['streams']} streams × {r['tokens_per_stream']}) | "
        f"{d['tokens_per_s_wall']:,.0f} | {r['tokens_per_s_wall']:,.0f} | "
        f"{r['tokens_per_s_wall'] / d['tokens_per_s_wall']:.2f}× | |",
        f"| relay tokens per sidecar CPU-second (per core) | | {r['tokens_per_cpu_s']:,.0f} | "
        f"({r['sidecar_cpu_s']:.2f} CPU-s) | ≥ 20,000 |",
        "",
        f"TTFT: {t['requests_each']} sequential streamed requests each way, alternating. Throughput: "
        "all streams at once; the client and mock engine share the machine's cores with the sidecar.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--role", choices=["bench", "engine", "sidecar"], default="bench", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--engine-url", default="", help=argparse.SUPPRESS)
    p.add_argument("--trace-dir", default="", help=argparse.SUPPRESS)
    p.add_argument("--ttft-requests", type=int, default=300, help="sequential requests each way (300)")
    p.add_argument("--streams", type=int, default=32, help="concurrent streams for throughput (32)")
    p.add_argument("--tokens", type=int, default=2000, help="tokens per stream for throughput (2000)")
    p.add_argument("--events-per-write", type=int, default=1,
                   help="SSE events the mock engine sends per write (1 = one per token, like real engines)")
    p.add_argument("--first-token-delay-ms", type=float, default=0.0, help="mock engine prefill time (0)")
    p.add_argument("--quick", action="store_true", help="small run (smoke test)")
    p.add_argument("--out", type=Path, default=HERE / "results", help="output folder")
    args = p.parse_args(argv)
    if args.ttft_requests < 1 or args.streams < 1 or args.tokens < 1 or args.events_per_write < 1:
        p.error("--ttft-requests, --streams, --tokens and --events-per-write must be >= 1")
    if args.role == "engine":
        asyncio.run(_run_engine(args.port, args.first_token_delay_ms / 1000.0, args.events_per_write))
        return 0
    if args.role == "sidecar":
        asyncio.run(_run_sidecar(args.engine_url, args.streams, args.trace_dir))
        return 0
    if args.quick:
        args.ttft_requests, args.streams, args.tokens = 30, 4, 200

    loadavg = os.getloadavg()
    engine_port = _free_port()
    engine = Child(["--role", "engine", "--port", str(engine_port), "--events-per-write",
                    str(args.events_per_write), "--first-token-delay-ms", str(args.first_token_delay_ms)])
    sidecar = None
    with tempfile.TemporaryDirectory(prefix="ltr-bench-traces-") as trace_dir:
        try:
            sidecar = Child(["--role", "sidecar", "--engine-url", f"http://127.0.0.1:{engine.port}",
                             "--streams", str(args.streams), "--trace-dir", trace_dir])
            result = asyncio.run(_measure(args, engine, sidecar))
        finally:
            for child in (sidecar, engine):
                if child is not None:
                    child.stop()
    result["environment"] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in loadavg], "python": platform.python_version(),
        "machine": platform.machine(), "events_per_write": args.events_per_write,
        "first_token_delay_ms": args.first_token_delay_ms, "quick": args.quick,
    }
    md = _markdown(result)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (args.out / f"sidecar_overhead{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"sidecar_overhead{suffix}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
