"""`ltr operator` as a real process: flags as the Helm chart passes them, liveness, JSON logs, clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from tests.support.operator import Http, eventually

LTRS = "/apis/ltrserving.dev/v1alpha1/namespaces/default/ltrservings"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _healthz(url: str) -> dict | None:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return await resp.json() if resp.status == 200 else None
    except aiohttp.ClientError:
        return None


async def test_operator_process_reconciles_serves_liveness_and_stops(
    http: Http, kubeconfig: Path, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    log = tmp_path / "operator.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ltr.cli",
            "operator",
            "--standalone",
            f"--liveness={url}",
            "--all-namespaces",
            "--sidecar-image=ltr-sidecar:1",
            "--default-engine-image=vllm=vllm/vllm-openai:1",
            f"--kubeconfig={kubeconfig}",
            "--resync-seconds=0.5",
            "--verbose",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            await http.create(
                LTRS,
                {
                    "apiVersion": "ltrserving.dev/v1alpha1",
                    "kind": "LTRServing",
                    "metadata": {"name": "cli", "namespace": "default"},
                    "spec": {"model": {"name": "m"}},
                },
            )
            dep = await eventually(lambda: http.get(f"{DEPLOY}/cli"), timeout=30)
            assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "vllm/vllm-openai:1"
            health = await eventually(lambda: _healthz(url), timeout=15)
            assert isinstance(health["reconcile_passes"], int)  # kopf caches probe results for a while
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), timeout=20)
    assert code == 0, log.read_text()[-2000:]
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any("created Deployment" in entry["message"] for entry in lines)
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in lines)
