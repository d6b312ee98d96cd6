"""Containers of the test node agent: processes in the pod's namespaces, restarts, probes, forwarders.

`Container` runs one container's command through `podexec.py` (pod netns, private mount namespace,
the container's uid), restarts it by the pod's restartPolicy with kubelet's back-off, runs its
startup/readiness/liveness probes (httpGet, tcpSocket, grpc, exec) against the pod IP and renders
its containerStatus. `EngineStandIn` plays an engine container: TCP forwarders inside the pod on the
container's ports to the one shared local engine (relays.forward).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from tests.support.cluster import netns
from tests.support.cluster.relays import forward

if TYPE_CHECKING:
    from tests.support.cluster.pods import PodWorker

PODEXEC = Path(__file__).with_name("podexec.py")


def now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class CannotRun(Exception):
    """The agent cannot run this container (waiting: CreateContainerError)."""


class Container:
    """One container of a pod (see the module doc)."""

    def __init__(self, worker: PodWorker, spec: dict[str, Any], init: bool = False) -> None:
        self.worker, self.spec, self.init = worker, spec, init
        self.name: str = spec["name"]
        self.state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict[str, Any] = {}
        self.restart_count = 0
        self.ready = self.started = False
        self.proc: asyncio.subprocess.Process | None = None
        self.container_id = ""
        self.stopping = asyncio.Event()
        self.exit_code: int | None = None
        self._last_probe: tuple[bool, str] = (True, "")
        self.launched: tuple[dict[str, str], dict[str, Any]] = ({}, {})

    # ---- status -------------------------------------------------------------------------------
    def _set(self, **state: Any) -> None:
        self.state = state
        self.worker.changed()

    def status(self) -> dict[str, Any]:
        state = {"running": None, "waiting": None, "terminated": None, **self.state}
        last = {"running": None, "waiting": None, "terminated": None, **self.last_state}
        out = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": last,
            "imageID": f"ltr-test-node-agent://{self.spec.get('image', '')}",
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out

    @property
    def finished(self) -> bool:
        return "terminated" in self.state

    # ---- lifecycle ----------------------------------------------------------------------------
    def should_restart(self, code: int) -> bool:
        policy = self.worker.restart_policy
        if self.init:
            return code != 0 and policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    async def start_process(self) -> None:
        argv, env, launch = await self.worker.launch_spec(self)
        spec_file = self.worker.dir / f"{self.name}.{self.restart_count}.json"
        spec_file.write_text(json.dumps({**launch, "argv": argv, "env": env}))
        self.launched = (env, launch)
        log = open(self.worker.dir / f"{self.name}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(PODEXEC),
                str(spec_file),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env=self.worker.agent.launcher_env,
            )
        finally:
            log.close()

    async def run(self) -> None:
        """Run, probe and restart until the container is done or stopped."""
        while not self.stopping.is_set():
            try:
                await self.start_process()
            except CannotRun as exc:
                self._set(waiting={"reason": "CreateContainerError", "message": str(exc)})
                self.worker.event("Warning", "Failed", f"Error: {exc}")
                await self.stopping.wait()
                return
            except ValueError as exc:  # SpecError: kubelet retries the config
                self._set(waiting={"reason": "CreateContainerConfigError", "message": str(exc)})
                self.worker.event("Warning", "Failed", f"Error: {exc}")
                await self._sleep(2.0)
                continue
            assert self.proc is not None
            self.container_id = f"ltr://{self.worker.uid[:8]}-{self.name}-{self.restart_count}"
            started_at = now_text()
            self._set(running={"startedAt": started_at})
            self.worker.event("Normal", "Started", f"Started container {self.name}")
            probes = asyncio.create_task(self.probe_loop())
            code = await self.proc.wait()
            code = 128 - code if code < 0 else code  # killed by a signal: 128 + signal number
            probes.cancel()
            await asyncio.gather(probes, return_exceptions=True)
            self.ready = self.started = False
            self.exit_code = code
            term = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": started_at,
                "finishedAt": now_text(),
                "containerID": self.container_id,
            }
            self._set(terminated=term)
            if self.stopping.is_set() or not self.should_restart(code):
                return
            await self._back_off(term)

    async def _back_off(self, term: dict[str, Any]) -> None:
        """Record the terminated run, count the restart and wait the kubelet's crash-loop back-off."""
        self.last_state = {"terminated": term}
        self.restart_count += 1
        delay = self.worker.agent.backoff(self.restart_count)
        if delay:
            msg = f"back-off {delay:g}s restarting failed container={self.name} pod={self.worker.name}"
            self._set(waiting={"reason": "CrashLoopBackOff", "message": msg})
            self.worker.event("Warning", "BackOff", f"Back-off restarting failed container {self.name}")
            await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def kill(self, grace_s: float) -> None:
        """SIGTERM the container's process group, SIGKILL after `grace_s`."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group

    async def stop(self, grace_s: float) -> None:
        self.stopping.set()
        await self.kill(grace_s)

    # ---- probes -------------------------------------------------------------------------------
    async def probe_loop(self) -> None:
        startup = self.spec.get("startupProbe")
        if startup and not await self._until_success(startup, "Startup"):
            return
        self.started = True
        self.worker.changed()
        await asyncio.gather(self._readiness(), self._liveness())

    def _timing(self, probe: dict[str, Any], capped: bool) -> tuple[float, float]:
        period = float(probe.get("periodSeconds", 10))
        cap = self.worker.agent.config.probe_period_cap_s
        return float(probe.get("initialDelaySeconds", 0)), min(period, cap) if capped and cap else period

    async def _until_success(self, probe: dict[str, Any], kind: str) -> bool:
        """The startup probe: its deadline (failureThreshold x periodSeconds) is kept when the period is
        capped - more, faster attempts, never a shorter budget than the kubelet gives."""
        delay, period = self._timing(probe, capped=True)
        deadline = float(probe.get("periodSeconds", 10)) * int(probe.get("failureThreshold", 3))
        threshold = math.ceil(deadline / period)  # = failureThreshold when the period is not capped
        await asyncio.sleep(delay)
        failures = 0
        while True:
            ok, message = await self.probe(probe)
            if ok:
                return True
            failures += 1
            if failures >= threshold:
                await self._unhealthy(kind, message, probe)
                return False
            await asyncio.sleep(period)

    async def _readiness(self) -> None:
        probe = self.spec.get("readinessProbe")
        if not probe:
            self.ready = True
            self.worker.changed()
            return
        delay, period = self._timing(probe, capped=True)
        await asyncio.sleep(delay)
        successes = failures = 0
        while True:
            ok, message = await self.probe(probe)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if ok and not self.ready and successes >= int(probe.get("successThreshold", 1)):
                self.ready = True
                self.worker.changed()
            elif not ok and failures >= int(probe.get("failureThreshold", 3)) and self.ready:
                self.ready = False
                self.worker.changed()
            if not ok and failures == 1:
                self.worker.event("Warning", "Unhealthy", f"Readiness probe failed: {message}")
            await asyncio.sleep(period)

    async def _liveness(self) -> None:
        probe = self.spec.get("livenessProbe")
        if not probe:
            return
        delay, period = self._timing(probe, capped=False)
        await asyncio.sleep(delay)
        failures = 0
        while True:
            ok, message = await self.probe(probe)
            failures = 0 if ok else failures + 1
            if failures >= int(probe.get("failureThreshold", 3)):
                await self._unhealthy("Liveness", message, probe)
                return
            await asyncio.sleep(period)

    async def _unhealthy(self, kind: str, message: str, probe: dict[str, Any]) -> None:
        self.worker.event("Warning", "Unhealthy", f"{kind} probe failed: {message}")
        self.worker.event(
            "Normal", "Killing", f"Container {self.name} failed {kind.lower()} probe, will be restarted"
        )
        grace = probe.get("terminationGracePeriodSeconds", self.worker.grace_s)
        asyncio.get_running_loop().create_task(self.kill(float(grace)))

    def _port(self, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in self.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ValueError(f"no container port named {port!r}")

    async def probe(self, probe: dict[str, Any]) -> tuple[bool, str]:
        """One probe attempt against the pod IP: (success, message); changes of outcome go to the log."""
        ok, message = await self._probe(probe)
        if (ok, message) != self._last_probe:
            self._last_probe = (ok, message)
            self.worker.agent.log(
                f"pod {self.worker.ns}/{self.worker.name} {self.name}: probe "
                f"{'ok' if ok else 'failed: ' + message}"
            )
        return ok, message

    async def _probe(self, probe: dict[str, Any]) -> tuple[bool, str]:
        timeout = float(probe.get("timeoutSeconds", 1))
        host = self.worker.pod_ip
        try:
            if "httpGet" in probe:
                get = probe["httpGet"]
                scheme = get.get("scheme", "HTTP").lower()
                url = f"{scheme}://{get.get('host') or host}:{self._port(get['port'])}{get.get('path', '/')}"
                headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s,
                    s.get(url, headers=headers, ssl=False, allow_redirects=False) as resp,
                ):
                    ok = 200 <= resp.status < 400
                    return ok, f"HTTP probe failed with statuscode: {resp.status}"
            if "tcpSocket" in probe:
                port = self._port(probe["tcpSocket"]["port"])
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                writer.close()
                return True, ""
            if "grpc" in probe:
                return await self._grpc(probe["grpc"], host, timeout)
            if "exec" in probe:
                return await self._exec(probe["exec"]["command"], timeout)
        except (TimeoutError, OSError, aiohttp.ClientError, ValueError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return False, f"unsupported probe {sorted(probe)}"

    async def _grpc(self, spec: dict[str, Any], host: str, timeout: float) -> tuple[bool, str]:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        async with grpc.aio.insecure_channel(f"{host}:{spec['port']}") as channel:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=spec.get("service", "")), timeout=timeout
                )
            except grpc.aio.AioRpcError as exc:
                return False, f"grpc probe: {exc.code().name}"
        ok = reply.status == health_pb2.HealthCheckResponse.SERVING
        state = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return ok, f"service unhealthy (responded with {state})"

    async def _exec(self, command: list[str], timeout: float) -> tuple[bool, str]:
        if self.proc is None or self.proc.returncode is not None:
            return False, "container is not running"
        env, launch = self.launched
        spec_file = self.worker.dir / f"{self.name}.exec.json"
        spec_file.write_text(
            json.dumps(
                {
                    "join": self.proc.pid,
                    "uid": launch.get("uid"),
                    "gid": launch.get("gid"),
                    "groups": launch.get("groups", []),
                    "cwd": launch.get("cwd"),
                    "argv": command,
                    "env": env,
                }
            )
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(PODEXEC),
            str(spec_file),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.worker.agent.launcher_env,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return False, f"command timed out after {timeout:g}s"
        return proc.returncode == 0, out.decode(errors="replace")[-300:]


class EngineStandIn(Container):
    """An engine container played by forwarders from the pod's ports to the shared engine.

    A failed startup or liveness probe "restarts" it as the kubelet would restart the container: the run
    ends (exit 137), restartCount grows, back-off, and its probes start over; the shared engine and the
    forwarders keep running."""

    def __init__(self, worker: PodWorker, spec: dict[str, Any], init: bool = False) -> None:
        super().__init__(worker, spec, init)
        self._restart = asyncio.Event()

    async def run(self) -> None:
        host, _, port = self.worker.agent.config.engine_address.rpartition(":")
        servers = []
        try:
            for p in self.spec.get("ports") or []:
                sock = netns.listen_in(self.worker.netns, "0.0.0.0", int(p["containerPort"]))
                servers.append(await forward(sock, host, int(port)))
        except OSError as exc:
            for s in servers:
                s.close()
            self._set(waiting={"reason": "CreateContainerError", "message": f"engine stand-in: {exc}"})
            await self.stopping.wait()
            return
        try:
            while not self.stopping.is_set():
                started_at = await self._run_once(f"{host}:{port}")
                if self.stopping.is_set():
                    break
                self._restart.clear()
                term = {
                    "exitCode": 137,
                    "reason": "Error",
                    "startedAt": started_at,
                    "finishedAt": now_text(),
                    "containerID": self.container_id,
                }
                await self._back_off(term)
        finally:
            for s in servers:
                s.close()
        self._set(
            terminated={
                "exitCode": 0,
                "reason": "Completed",
                "finishedAt": now_text(),
                "containerID": self.container_id,
            }
        )

    async def _run_once(self, engine: str) -> str:
        """One "run" of the stand-in: probes until it is stopped or a probe failure restarts it."""
        self.container_id = f"ltr://{self.worker.uid[:8]}-{self.name}-standin-{self.restart_count}"
        started_at = now_text()
        self._set(running={"startedAt": started_at})
        self.worker.event(
            "Normal", "Started", f"Started container {self.name} (stand-in: shared engine at {engine})"
        )
        waits = [asyncio.create_task(e.wait()) for e in (self.stopping, self._restart)]
        probes = asyncio.create_task(self.probe_loop())
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in (*waits, probes):
            task.cancel()
        await asyncio.gather(*waits, probes, return_exceptions=True)
        self.ready = self.started = False
        return started_at

    async def kill(self, grace_s: float) -> None:
        """A probe failure: restart the stand-in (the shared engine keeps running)."""
        self._restart.set()

    async def stop(self, grace_s: float) -> None:
        self.stopping.set()
