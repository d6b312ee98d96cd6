"""Sidecar overhead benchmark: added time-to-first-token and relay throughput per core.

Starts a scripted OpenAI-compatible engine (no model: it streams "x" tokens, so the sidecar's own
cost is what is measured) and `ltr sidecar` in front of it, each as a subprocess, then:

1. TTFT, one request at a time (max_tokens=1): engine direct over HTTP vs through the sidecar's
   HTTP front door (same client code), and through gRPC Generate. Added = sidecar p50 − direct p50.
   The predictor is the trivial `prompt-length` artifact, so scoring costs ~µs (the thread hop to the
   scorer is included).
2. Relay throughput: `--streams` concurrent gRPC Generate streams of `--tokens` tokens each; streamed
   tokens divided by the sidecar process's CPU seconds (user+sys, from /proc) = tokens/s per core.

Prints one JSON object. Run: `python -m ltr_sidecar.server.bench_overhead [--requests 200]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import grpc

from ltr.v1 import scheduler_pb2 as pb
from ltr.v1 import scheduler_pb2_grpc as pb_grpc
from ltr_sidecar.engine.tiny import free_port


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _wait_http(url: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < end:
            try:
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s")


async def _http_ttft(session: aiohttp.ClientSession, url: str) -> float:
    body = {"prompt": "hello there", "max_tokens": 1, "stream": True}
    start = time.perf_counter()
    async with session.post(url + "/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.content:
            if line.startswith(b"data:") and b'"x"' in line:
                ttft = time.perf_counter() - start
                async for _ in r.content:
                    pass
                return ttft
    raise RuntimeError("stream ended without a token")


async def _grpc_ttft(stub: pb_grpc.SchedulerStub) -> float:
    start = time.perf_counter()
    ttft = 0.0
    async for msg in stub.Generate(pb.GenerateRequest(prompt="hello there", max_tokens=1)):
        if msg.text and not ttft:
            ttft = time.perf_counter() - start
    return ttft


def _p50_ms(xs: list[float]) -> float:
    return round(statistics.median(xs) * 1000, 3)


@contextlib.contextmanager
def _pair(predictor_dir: Path, token_delay_ms: float,
          scoring_window_ms: float) -> Iterator[tuple[str, str, int, int]]:
    """A scripted engine + `ltr sidecar` in front of it: (engine URL, sidecar HTTP URL, gRPC port, pid)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    engine_port, grpc_port, http_port = free_port(), free_port(), free_port()
    engine = subprocess.Popen(
        [sys.executable, "-m", "ltr_sidecar.engine.scripted", "--port", str(engine_port),
         "--token-delay-ms", str(token_delay_ms)], env=env, stdout=subprocess.DEVNULL)
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "ltr.cli", "sidecar", "--engine-url", f"http://127.0.0.1:{engine_port}",
         "--predictor", str(predictor_dir), "--policy", "fcfs", "--max-concurrency", "1024",
         "--grpc-port", str(grpc_port), "--http-port", str(http_port), "--host", "127.0.0.1",
         "--scoring-window-ms", str(scoring_window_ms), "--log-level", "warning"], env=env)
    try:
        yield f"http://127.0.0.1:{engine_port}", f"http://127.0.0.1:{http_port}", grpc_port, sidecar.pid
    finally:
        for proc in (sidecar, engine):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _ttft(engine_url: str, sidecar_http: str, grpc_port: int, requests: int) -> dict[str, object]:
    await _wait_http(engine_url + "/health")
    await _wait_http(sidecar_http + "/health")
    async with aiohttp.ClientSession() as session, \
            grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.SchedulerStub(channel)
        for _ in range(20):  # warm-up: connections, lazy imports
            await _http_ttft(session, engine_url)
            await _http_ttft(session, sidecar_http)
            await _grpc_ttft(stub)
        direct, via_http, via_grpc = [], [], []
        for _ in range(requests):  # interleaved, so load noise hits all three alike
            direct.append(await _http_ttft(session, engine_url))
            via_http.append(await _http_ttft(session, sidecar_http))
            via_grpc.append(await _grpc_ttft(stub))
    return {"ttft_p50_ms": {"engine_direct_http": _p50_ms(direct), "sidecar_http": _p50_ms(via_http),
                            "sidecar_grpc": _p50_ms(via_grpc)},
            "added_ttft_p50_ms": {"http": round(_p50_ms(via_http) - _p50_ms(direct), 3),
                                  "grpc_vs_direct_http": round(_p50_ms(via_grpc) - _p50_ms(direct), 3)}}


async def _relay(sidecar_http: str, grpc_port: int, pid: int, streams: int, tokens: int) -> dict[str, object]:
    """`streams` concurrent gRPC streams of `tokens` tokens; sidecar CPU seconds per streamed token."""
    await _wait_http(sidecar_http + "/health")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.SchedulerStub(channel)

        async def stream() -> tuple[int, int]:
            n = msgs = 0
            async for msg in stub.Generate(pb.GenerateRequest(prompt="relay", max_tokens=tokens)):
                n, msgs = n + msg.tokens, msgs + 1
            return n, msgs

        await stream()  # warm-up
        cpu0, t0 = _cpu_seconds(pid), time.perf_counter()
        results = await asyncio.gather(*(stream() for _ in range(streams)))
        cpu, wall = _cpu_seconds(pid) - cpu0, time.perf_counter() - t0
    total = sum(n for n, _ in results)
    messages = sum(m for _, m in results)
    return {"streams": streams, "tokens": total, "messages": messages, "wall_s": round(wall, 3),
            "sidecar_cpu_s": round(cpu, 3), "tokens_per_s_wall": round(total / wall),
            "tokens_per_cpu_s": round(total / cpu) if cpu > 0 else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=200, help="sequential TTFT samples per path")
    p.add_argument("--streams", type=int, default=64, help="concurrent relay streams")
    p.add_argument("--tokens", type=int, default=500, help="tokens per relay stream")
    p.add_argument("--paced-token-ms", type=float, default=5.0,
                   help="per-stream token interval of the paced engine (like an engine's decode step)")
    p.add_argument("--scoring-window-ms", type=float, default=0.0,
                   help="sidecar micro-batch window (0 = score at once: overhead without batching delay)")
    args = p.parse_args(argv)
    from ltr_sidecar.predictor import PromptLengthPredictor

    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="ltr-overhead-") as tmp:
        predictor = Path(tmp) / "predictor"
        PromptLengthPredictor(version="prompt-length").save(predictor)
        with _pair(predictor, 0.0, args.scoring_window_ms) as (engine_url, http_url, grpc_port, pid):
            result.update(asyncio.run(_ttft(engine_url, http_url, grpc_port, args.requests)))
            result["relay_unpaced"] = asyncio.run(_relay(http_url, grpc_port, pid, args.streams, args.tokens))
        with _pair(predictor, args.paced_token_ms, args.scoring_window_ms) as (_, http_url, grpc_port, pid):
            result["relay_paced"] = asyncio.run(_relay(http_url, grpc_port, pid, args.streams, args.tokens))
            result["relay_paced"]["engine_token_interval_ms"] = args.paced_token_ms  # type: ignore[index]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
