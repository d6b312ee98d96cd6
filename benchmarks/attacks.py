"""Black-box probes of the serving path (issue 13's findings) against an `ltr sidecar` process.

Starts the scripted engine (it answers HTTP 500 to a prompt containing POISON) and `ltr sidecar` from a
source tree (`--tree`, default this checkout; pass an older checkout to measure "before"), then sends
each attack over the wire and records what came back. Writes `<out>/attacks-<label>.json`; with two
labels present, `attacks.md` puts them side by side.

    python benchmarks/attacks.py --label after
    python benchmarks/attacks.py --label before --tree /path/to/old/checkout
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from ltr.v1 import scheduler_pb2 as pb
from ltr.v1 import scheduler_pb2_grpc as pb_grpc
from ltr_sidecar.devtools.ports import free_port
from ltr_sidecar.devtools.scripted_engine import ScriptedEngine

REPO = Path(__file__).resolve().parent.parent
POISON = "POISON-PILL"


async def _start_sidecar(tree: Path, engine_url: str, workdir: Path, trace_dir: str) -> tuple[Any, int, int]:
    grpc_port, http_port = free_port(), free_port()
    cfg = workdir / "sidecar.yaml"
    cfg.write_text(
        f"engine_url: {engine_url}\ngrpc_port: {grpc_port}\nhttp_port: {http_port}\n"
        f"host: 127.0.0.1\nmax_concurrency: 4\ntrace_dir: {trace_dir}\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tree}/sidecar:{tree}/operator", "PYTHONUNBUFFERED": "1"}
    with (workdir / "sidecar.log").open("a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ltr.cli", "sidecar", "--config", str(cfg)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return proc, grpc_port, http_port
            try:
                async with s.get(f"http://127.0.0.1:{http_port}/health") as r:
                    if r.status == 200:
                        return proc, grpc_port, http_port
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    return proc, grpc_port, http_port


async def _post(
    s: aiohttp.ClientSession, url: str, data: bytes, path: str = "/v1/completions"
) -> dict[str, Any]:
    t = time.perf_counter()
    async with s.post(url + path, data=data, headers={"content-type": "application/json"}) as r:
        text = await r.text()
    return {"status": r.status, "ms": round((time.perf_counter() - t) * 1000, 1), "body": text[:160]}


async def _grpc(port: int, call: str, msg: Any) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        try:
            if call == "Generate":
                msgs = [m async for m in pb_grpc.SchedulerStub(ch).Generate(msg, timeout=20)]
                return {
                    "code": "OK",
                    "final": pb.FinishReason.Name(msgs[-1].final.finish_reason) if msgs else "",
                }
            await getattr(pb_grpc.PredictorAdminStub(ch), call)(msg, timeout=20)
            return {"code": "OK"}
        except grpc.aio.AioRpcError as err:
            return {"code": err.code().name, "details": (err.details() or "")[:160]}


async def _partial_connections(port: int, n: int, wait_s: float) -> dict[str, Any]:
    """Hold `n` connections whose headers never finish; how many has the server closed after wait_s?"""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(n)]
    for _, w in conns:
        w.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
        await w.drain()
    await asyncio.sleep(wait_s)
    closed = 0
    for r, w in conns:
        try:
            await asyncio.wait_for(r.read(), 0.2)  # returns at EOF: the server closed it
            closed += 1
        except TimeoutError:
            pass
        w.close()
    return {"held": n, "after_s": wait_s, "closed_by_server": closed}


async def probe(tree: Path) -> dict[str, Any]:
    engine = ScriptedEngine(token_delay_s=0.001, record=False, poison=POISON)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = await engine.start()
        blocked = work / "file"
        blocked.write_text("x")
        proc, _, _ = await _start_sidecar(tree, url, work, str(blocked / "traces"))
        time.sleep(1)
        out["4 unwritable trace dir"] = {"sidecar_running": proc.poll() is None}
        proc.terminate()
        proc.wait(10)
        proc, gport, hport = await _start_sidecar(tree, url, work, str(work / "traces"))
        base = f"http://127.0.0.1:{hport}"
        try:
            out["1 LoadPredictor(path) on the data port"] = await _grpc(
                gport, "LoadPredictor", pb.LoadPredictorRequest(path=str(work))
            )
            out["1 LoadPredictor(latest) on the data port"] = await _grpc(
                gport, "LoadPredictor", pb.LoadPredictorRequest(version="latest")
            )
            async with aiohttp.ClientSession() as s:
                big = json.dumps({"prompt": "x " * 31_000, "max_tokens": 2}).encode()
                out["2 61 KB prompt (HTTP)"] = await _post(s, base, big)
                out["2 100k-deep JSON"] = await _post(s, base, b"[" * 100_000 + b"]" * 100_000)
                out["3 lone surrogate prompt"] = await _post(
                    s, base, b'{"prompt": "a \\ud800 b", "max_tokens": 2}'
                )
                out["3 seed 2^64"] = await _post(
                    s, base, json.dumps({"prompt": "hi", "max_tokens": 2, "seed": 2**64}).encode()
                )
                poisoned = [
                    await _post(s, base, json.dumps({"prompt": POISON, "max_tokens": 2}).encode())
                    for _ in range(3)
                ]
                async with s.get(base + "/health") as r:
                    health = {"status": r.status, "body": (await r.text())[:240]}
                out["3 engine 500 for one request"] = {
                    "statuses": [p["status"] for p in poisoned],
                    "health_after": health["status"],
                }
                out["6 /health body"] = health
                chat = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
                out["8 chat without max_tokens"] = await _post(s, base, chat, "/v1/chat/completions")
            out["2 61 KB prompt (gRPC)"] = await _grpc(
                gport, "Generate", pb.GenerateRequest(prompt="x " * 31_000, max_tokens=2)
            )
            out["8 request_id with a newline (gRPC)"] = await _grpc(
                gport, "Generate", pb.GenerateRequest(prompt="hi", max_tokens=2, request_id="a\nb")
            )
            out["8 17 stop strings (gRPC)"] = await _grpc(
                gport,
                "Generate",
                pb.GenerateRequest(
                    prompt="hi", max_tokens=2, sampling=pb.SamplingParams(stop=[f"s{i}" for i in range(17)])
                ),
            )
            engine.fail_after = 1
            out["8 mid-stream engine failure (gRPC)"] = await _grpc(
                gport, "Generate", pb.GenerateRequest(prompt="hi", max_tokens=4)
            )
            engine.fail_after = None
            out["7 20 partial-header connections"] = await _partial_connections(hport, 20, 20.0)
            traces = list((work / "traces").rglob("*"))
            out["6 trace file modes"] = sorted({oct(p.stat().st_mode & 0o777) for p in traces})
        finally:
            proc.terminate()
            proc.wait(15)
            await engine.stop()
    return out


def write_markdown(out_dir: Path) -> Path | None:
    runs = {
        p.stem.removeprefix("attacks-"): json.loads(p.read_text())
        for p in sorted(out_dir.glob("attacks-*.json"))
    }
    if len(runs) < 2:
        return None
    labels = sorted(runs, key=lambda k: (k != "before", k))
    keys = sorted({k for r in runs.values() for k in r["results"]})
    lines = ["| attack / fault | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for key in keys:
        cells = [json.dumps(runs[label]["results"].get(key, "-"))[:180].replace("|", "/") for label in labels]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    path = out_dir / "attacks.md"
    path.write_text(
        "# Security probes (issue 13), black box against `ltr sidecar`\n\n"
        + "\n".join(f"- {label}: tree `{runs[label]['tree_commit']}`" for label in labels)
        + "\n\n"
        + "\n".join(lines)
        + "\n"
    )
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, default=REPO, help="source tree whose `ltr sidecar` is probed")
    p.add_argument("--label", default="after")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    commit = subprocess.run(
        ["git", "-C", str(args.tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    results = asyncio.run(probe(args.tree.resolve()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"attacks-{args.label}.json").write_text(
        json.dumps({"tree_commit": commit, "results": results}, indent=2) + "\n"
    )
    md = write_markdown(args.out)
    print(json.dumps(results, indent=2))
    if md:
        print(f"wrote {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
