"""One pod on a test node, from binding to deletion (the part of kubelet the agent plays per pod).

`PodWorker` creates the pod's network namespace and IP, forwards the `kubernetes` Service IP inside
it to the API server, sets up its volumes (retrying like kubelet's FailedMount), runs init
containers in order and then the containers, keeps ConfigMap/Secret/token volumes fresh, reports
pod status (phase, conditions, IPs, containerStatuses) by strategic-merge patches of `pods/status`,
and on deletion stops the containers within the grace period and removes the pod object.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.cluster import netns, podspec
from tests.support.cluster.containers import CannotRun, Container, EngineStandIn, now_text
from tests.support.cluster.relays import forward, host_resolver, relay_dns
from tests.support.cluster.rest import STRATEGIC, ApiError, AsyncApi
from tests.support.cluster.volumes import MountPending, PodVolumes

if TYPE_CHECKING:
    from tests.support.cluster.nodeagent import NodeAgent


class PodWorker:
    """See the module doc. Create it for a pod bound to `node`; feed it updates with `update`."""

    def __init__(self, agent: NodeAgent, node: str, api: AsyncApi, pod: dict[str, Any]) -> None:
        self.agent, self.node, self.api, self.pod = agent, node, api, pod
        meta = pod["metadata"]
        self.uid, self.name, self.ns = meta["uid"], meta["name"], meta["namespace"]
        self.dir = agent.config.state / "pods" / f"{self.ns}_{self.name}_{self.uid[:8]}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.slot: int | None = None
        self.pod_ip = self.netns = ""
        self.sandbox_ready = False
        self.volumes = PodVolumes(
            api, pod, self.dir / "volumes", agent.node_allocatable(node), view=self.view
        )
        self.volume_paths: dict[str, Path] = {}
        spec = pod["spec"]
        self.init_containers = [Container(self, c, init=True) for c in spec.get("initContainers") or []]
        self.containers = [
            EngineStandIn(self, c) if agent.is_engine(c) else Container(self, c)
            for c in spec.get("containers") or []
        ]
        self.init_done = not self.init_containers
        self.terminal = ""
        self.deleting = asyncio.Event()
        self.gone = False
        self._dirty = asyncio.Event()
        self._sent: dict[str, Any] = {}
        self._servers: list[asyncio.Server] = []
        self._dns: asyncio.DatagramTransport | None = None
        self.start_time = now_text()
        self.tasks = [
            asyncio.create_task(self.run(), name=f"pod {self.ns}/{self.name}"),
            asyncio.create_task(self.status_loop(), name=f"status {self.ns}/{self.name}"),
        ]

    # ---- facts --------------------------------------------------------------------------------
    @property
    def restart_policy(self) -> str:
        return str(self.pod["spec"].get("restartPolicy", "Always"))

    @property
    def grace_s(self) -> float:
        meta = self.pod["metadata"]
        if meta.get("deletionGracePeriodSeconds") is not None:
            return float(meta["deletionGracePeriodSeconds"])
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    def view(self) -> dict[str, Any]:
        """The pod as kubelet knows it: the API object with this node's IPs (not yet reported maybe)."""
        ips = {"hostIP": self.agent.host_ip, "hostIPs": [{"ip": self.agent.host_ip}]}
        if self.pod_ip:
            ips.update(podIP=self.pod_ip, podIPs=[{"ip": self.pod_ip}])
        return {**self.pod, "status": {**(self.pod.get("status") or {}), **ips}}

    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        self.volumes.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleting.set()

    def changed(self) -> None:
        self._dirty.set()

    def event(self, etype: str, reason: str, message: str) -> None:
        self.agent.post_event(self.api, self.node, self.pod, etype, reason, message)

    # ---- container launch -----------------------------------------------------------------------
    async def launch_spec(self, c: Container) -> tuple[list[str], dict[str, str], dict[str, Any]]:
        """(argv, env, launcher spec) of container `c`; raises CannotRun / podspec.SpecError."""
        spec = c.spec
        objects: dict[tuple[str, str], Any] = {}
        for kind, name in podspec.referenced_objects(spec):
            plural = "configmaps" if kind == "ConfigMap" else "secrets"
            objects[(kind, name)] = await self.api.get(f"/api/v1/namespaces/{self.ns}/{plural}/{name}")
        sc = {**(self.pod["spec"].get("securityContext") or {}), **(spec.get("securityContext") or {})}
        uid, gid = sc.get("runAsUser"), sc.get("runAsGroup")
        if sc.get("runAsNonRoot") and not uid:
            raise podspec.SpecError("container has runAsNonRoot and image will run as root")
        env = {
            **self.agent.base_env,
            "HOSTNAME": self.pod["spec"].get("hostname") or self.name,
            "HOME": "/root" if not uid else "/",
        }
        env.update(
            podspec.container_env(
                self.view(),
                spec,
                objects,
                podspec.service_env(self.agent.config.service_ip),
                self.agent.node_allocatable(self.node),
            )
        )
        command, args = spec.get("command"), spec.get("args")
        defaults = self.agent.image_defaults(str(spec.get("image", "")))
        if not command and defaults is not None:  # Kubernetes: command replaces ENTRYPOINT, args CMD
            command, args = defaults[0], args if args is not None else defaults[1]
        if not command:
            raise CannotRun(
                f"test node agent: image {spec.get('image')!r} has no command in the pod spec and "
                "images are not run here (only commands that exist on this machine)"
            )
        argv = [podspec.expand(a, env) for a in [*command, *(args or [])]]
        exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH"))
        if not exe or not os.access(exe, os.X_OK):
            raise CannotRun(
                f'exec: "{argv[0]}": executable file not found in $PATH (test node agent: '
                f"image {spec.get('image')!r} is not run, only host commands)"
            )
        groups = [g for g in [gid, *(sc.get("supplementalGroups") or []), sc.get("fsGroup")] if g is not None]
        mounts = []
        for vm in sorted(spec.get("volumeMounts") or [], key=lambda m: m["mountPath"].count("/")):
            source = self.volume_paths[vm["name"]]
            if vm.get("subPath"):
                source = Path(os.path.realpath(source / podspec.expand(vm["subPath"], env)))
            mounts.append(
                {
                    "source": str(source),
                    "target": self.agent.mountpoint(vm["mountPath"], source.is_dir()),
                    "readOnly": bool(vm.get("readOnly")),
                }
            )
        for name in ("hosts", "resolv.conf"):  # kubelet's per-pod /etc/hosts and /etc/resolv.conf
            mounts.append({"source": str(self.dir / name), "target": f"/etc/{name}", "readOnly": False})
        launch = {
            "netns": str(netns.NETNS_DIR / self.netns),
            "mounts": mounts,
            "readOnlyRoot": bool(sc.get("readOnlyRootFilesystem")),
            "hostname": env["HOSTNAME"],
            "uid": uid,
            "gid": gid if gid is not None else uid,
            "groups": groups,
            "cwd": spec.get("workingDir"),
            "reveal": self.agent.hidden,
            "image": self.agent.image_paths,
        }
        return argv, env, launch

    # ---- lifecycle ----------------------------------------------------------------------------
    async def _sandbox(self) -> None:
        self.slot = self.agent.allocate_slot()
        self.pod_ip = self.agent.slot_ip(self.slot)
        cfg = self.agent.config
        self.netns = await asyncio.to_thread(
            netns.create, cfg.cluster_id, self.slot, self.pod_ip, [cfg.service_ip, cfg.dns_ip]
        )
        sock = netns.listen_in(self.netns, cfg.service_ip, 443)
        self._servers.append(await forward(sock, "127.0.0.1", cfg.apiserver_port))
        self._dns = await relay_dns(netns.udp_in(self.netns, cfg.dns_ip, 53), host_resolver())
        hostname = self.pod["spec"].get("hostname") or self.name
        (self.dir / "hosts").write_text(
            f"# Kubernetes-managed hosts file (test node agent).\n127.0.0.1\tlocalhost\n::1\tlocalhost\n"
            f"{self.pod_ip}\t{hostname}\n"
        )
        (self.dir / "resolv.conf").write_text(
            f"search {self.ns}.svc.cluster.local svc.cluster.local cluster.local\n"
            f"nameserver {cfg.dns_ip}\noptions ndots:5\n"
        )
        self.sandbox_ready = True
        self.changed()

    async def _mount(self) -> bool:
        reported = ""
        while not self.deleting.is_set():
            try:
                self.volume_paths = await self.volumes.setup()
                return True
            except (MountPending, ApiError) as exc:
                if str(exc) != reported:
                    reported = str(exc)
                    self.event("Warning", "FailedMount", f"MountVolume.SetUp failed: {exc}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.deleting.wait(), 1.0)
        return False

    async def run(self) -> None:
        try:
            await self._sandbox()
            if await self._mount():
                await self._run_containers()
        except Exception as exc:  # a harness bug must show up in the pod, not kill the agent
            self.event("Warning", "Failed", f"test node agent: {type(exc).__name__}: {exc}")
            self.agent.log(f"pod {self.ns}/{self.name}: {type(exc).__name__}: {exc}")
        await self.deleting.wait()
        await self._terminate()

    async def _run_containers(self) -> None:
        for c in self.init_containers:
            await c.run()
            if c.exit_code != 0:
                self.terminal = "Failed"
                self.changed()
                return
        self.init_done = True
        self.changed()
        tasks = [asyncio.create_task(c.run()) for c in self.containers]
        refresh = asyncio.create_task(self._refresh_loop())
        deleting: asyncio.Future[Any] = asyncio.create_task(self.deleting.wait())
        containers: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*tasks))
        await asyncio.wait([deleting, containers], return_when=asyncio.FIRST_COMPLETED)
        refresh.cancel()
        deleting.cancel()
        if not self.deleting.is_set():  # every container finished for good (restartPolicy Never/OnFailure)
            self.terminal = "Succeeded" if all(c.exit_code == 0 for c in self.containers) else "Failed"
            self.changed()
            await self._teardown_network()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.agent.config.volume_sync_s)
            with contextlib.suppress(ApiError, OSError):
                await self.volumes.refresh()

    async def _teardown_network(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()
        if self._dns is not None:
            self._dns.close()
            self._dns = None
        if self.slot is not None:
            await asyncio.to_thread(netns.delete, self.agent.config.cluster_id, self.slot)
            self.agent.release_slot(self.slot)
            self.slot = None

    async def _terminate(self) -> None:
        """Deletion: SIGTERM every container, SIGKILL after the grace period, then remove the pod object."""
        running = [
            c for c in self.init_containers + self.containers if c.proc or isinstance(c, EngineStandIn)
        ]
        if running and not self.gone:
            self.event("Normal", "Killing", f"Stopping containers (grace {self.grace_s:g}s)")
        await asyncio.gather(
            *(c.stop(0 if self.gone else self.grace_s) for c in self.init_containers + self.containers)
        )
        await self._teardown_network()
        if not self.terminal:
            self.terminal = "Succeeded" if all(c.exit_code == 0 for c in self.containers) else "Failed"
        if not self.gone:
            await self._patch_status()
            with contextlib.suppress(ApiError):
                await self.api.request(
                    "DELETE",
                    f"/api/v1/namespaces/{self.ns}/pods/{self.name}",
                    {
                        "kind": "DeleteOptions",
                        "apiVersion": "v1",
                        "gracePeriodSeconds": 0,
                        "preconditions": {"uid": self.uid},
                    },
                )
        for t in self.tasks[1:]:
            t.cancel()
        self.agent.forget(self)
        shutil.rmtree(self.dir / "volumes", ignore_errors=True)

    async def shutdown(self) -> None:
        """The agent stops (cluster down): kill the containers, free the network, leave the API alone."""
        self.gone = True
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(
            *(c.stop(min(self.grace_s, 5.0)) for c in self.init_containers + self.containers)
        )
        await self._teardown_network()

    def force_gone(self) -> None:
        """The pod object vanished (force deletion): stop everything at once."""
        self.gone = True
        self.deleting.set()

    # ---- status -------------------------------------------------------------------------------
    def render_status(self) -> dict[str, Any]:
        now = now_text()
        previous = (self.pod.get("status") or {}).get("conditions") or []
        statuses = [c.status() for c in self.containers]
        init_statuses = [c.status() for c in self.init_containers]
        phase = self.terminal or podspec.pod_phase(statuses, self.restart_policy, self.init_done)
        unready = [c.name for c in self.containers if not c.ready]
        done = phase in ("Succeeded", "Failed")
        reason = "PodCompleted" if done else ("ContainersNotReady" if unready else "")
        message = "" if done or not unready else f"containers with unready status: [{' '.join(unready)}]"
        ready = not unready and not done
        conditions = [
            podspec.condition("PodReadyToStartContainers", self.sandbox_ready and not done, now, previous),
            podspec.condition(
                "Initialized",
                self.init_done,
                now,
                previous,
                "" if self.init_done else "ContainersNotInitialized",
            ),
            podspec.condition("Ready", ready, now, previous, reason, message),
            podspec.condition("ContainersReady", ready, now, previous, reason, message),
        ]
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": conditions,
            "startTime": self.start_time,
            "hostIP": self.agent.host_ip,
            "hostIPs": [{"ip": self.agent.host_ip}],
            "containerStatuses": statuses,
            "observedGeneration": self.pod["metadata"].get("generation"),
        }
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        if self.pod_ip:
            status["podIP"], status["podIPs"] = self.pod_ip, [{"ip": self.pod_ip}]
        return status

    async def _patch_status(self) -> None:
        status = self.render_status()
        comparable = {k: v for k, v in status.items() if k != "conditions"}
        comparable["conditions"] = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]
        ]
        if comparable == self._sent:
            return
        reply = await self.api.request(
            "PATCH", f"/api/v1/namespaces/{self.ns}/pods/{self.name}/status", {"status": status}, STRATEGIC
        )
        self._sent = comparable
        self.pod["status"] = reply.get("status", status)

    async def status_loop(self) -> None:
        while not self.gone:
            await self._dirty.wait()
            await asyncio.sleep(0.05)  # coalesce bursts
            self._dirty.clear()
            try:
                await self._patch_status()
            except ApiError as exc:
                if exc.status == 404:
                    return
                self._dirty.set()
                await asyncio.sleep(1.0)
            except OSError:
                self._dirty.set()
                await asyncio.sleep(1.0)
