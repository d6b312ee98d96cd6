"""The test node agent: kubelet's part for one or more Nodes, on this machine (test infrastructure).

It registers each Node (capacity with fake `nvidia.com/gpu`, taints, labels) with that node's own
client certificate (`system:node:NAME`, so the Node authorizer and NodeRestriction apply as for a
kubelet), keeps its Lease renewed and Ready condition posted, watches the pods the real scheduler
binds to it and runs each one with a `PodWorker` (pods.py). Containers run the pod's real commands;
engine images are played by forwarders to one shared local engine. It also recycles the harness's
pool of hostPath PersistentVolumes (storage.py) with the admin identity.
Run: `python -m tests.support.cluster agent STATE_DIR` (cluster.py does).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support.cluster import storage
from tests.support.cluster.containers import now_text
from tests.support.cluster.pods import PodWorker
from tests.support.cluster.procs import MARKER
from tests.support.cluster.rest import STRATEGIC, ApiError, AsyncApi, Identity, list_and_watch
from tests.support.cluster.tools import REPO_ROOT

ENGINE_IMAGES = ("vllm", "sglang", "text-generation-inference", "tgi")
# Images of this project the agent can run from the local checkout: repository suffix →
# (ENTRYPOINT, CMD) exactly as in operator/Dockerfile and sidecar/Dockerfile (a test keeps them equal).
PROJECT_IMAGES: dict[str, tuple[list[str], list[str]]] = {
    "ltr-operator": (["ltr", "operator"], []),
    "ltr-sidecar": (["ltr"], ["sidecar", "--config", "/etc/ltr/sidecar.yaml"]),
}
HOST_IP = "169.254.1.1"  # every host-side veth carries it: pods reach the node at this address


@dataclass
class NodeSpec:
    """A Node the agent registers."""

    name: str
    cpu: str = "32"
    memory: str = "128Gi"
    gpus: int = 0
    taints: list[dict[str, str]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)

    def capacity(self) -> dict[str, str]:
        cap = {"cpu": self.cpu, "memory": self.memory, "pods": "110", "ephemeral-storage": "200Gi"}
        if self.gpus:
            cap["nvidia.com/gpu"] = str(self.gpus)
        return cap


def default_nodes() -> list[NodeSpec]:
    """A CPU node and a GPU node tainted as GPU nodes usually are."""
    return [
        NodeSpec("cpu-0"),
        NodeSpec(
            "gpu-0",
            cpu="64",
            memory="512Gi",
            gpus=8,
            taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
            labels={"nvidia.com/gpu.present": "true"},
        ),
    ]


@dataclass
class AgentConfig:
    """Everything the agent needs, stored as state/agent.json by the harness."""

    state: Path
    cluster_id: str
    server: str
    apiserver_port: int
    subnet: str
    engine_address: str  # host:port of the shared engine
    nodes: list[NodeSpec]
    service_ip: str = "10.96.0.1"
    dns_ip: str = "10.96.0.10"  # pods' nameserver: relayed to this machine's resolver
    probe_period_cap_s: float = 1.0  # readiness/startup probes run at least this often (liveness: as written)
    volume_sync_s: float = 1.0  # ConfigMap/Secret volume refresh (kubelet: up to its ~1 min sync period)
    backoff_base_s: float = 10.0
    backoff_cap_s: float = 300.0
    engine_images: tuple[str, ...] = ENGINE_IMAGES

    def save(self) -> None:
        data = asdict(self)
        data["state"] = str(self.state)
        (self.state / "agent.json").write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, state: Path) -> AgentConfig:
        data = json.loads((state / "agent.json").read_text())
        data["state"] = Path(data["state"])
        data["nodes"] = [NodeSpec(**n) for n in data["nodes"]]
        data["engine_images"] = tuple(data["engine_images"])
        return cls(**data)


def hidden_ancestors(paths: list[str]) -> dict[str, list[str]]:
    """{dir others cannot traverse: [its children on the way to `paths`]} (see podexec.reveal)."""
    out: dict[str, list[str]] = {}
    for raw in paths:
        if not raw:
            continue
        path = Path(os.path.realpath(raw))
        for parent in reversed(path.parents):
            if parent != path and not parent.stat().st_mode & 0o001:
                child = path.relative_to(parent).parts[0]
                if child not in out.setdefault(str(parent), []):
                    out[str(parent)].append(child)
                break
    return out


def image_paths(paths: list[str]) -> list[str]:
    """The host directories that stand in for a container image (interpreter, checkout), outermost
    only (see podexec: a volume mounted above one of them must not hide it)."""
    real = sorted({os.path.realpath(p) for p in paths if p})
    return [p for p in real if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in real)]


class NodeAgent:
    """See the module doc."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.host_ip = HOST_IP
        self.workers: dict[str, PodWorker] = {}
        self._slots: set[int] = set()
        self._net = ipaddress.IPv4Network(config.subnet)
        self._tasks: set[asyncio.Task[Any]] = set()
        marker = {MARKER: str(config.state.resolve())}
        venv_bin = str(Path(sys.executable).parent)
        self.base_env = {
            "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "HF_HUB_OFFLINE": "1",
            **marker,
        }
        if os.environ.get("PYTHONPATH"):
            self.base_env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        self.launcher_env = {"PATH": self.base_env["PATH"], "LANG": "C.UTF-8", **marker}
        program = [sys.base_prefix, sys.prefix, *os.environ.get("PYTHONPATH", "").split(":"), str(REPO_ROOT)]
        self.hidden = hidden_ancestors(program)
        self.image_paths = image_paths(program)

    # ---- services for PodWorker ---------------------------------------------------------------
    def log(self, message: str) -> None:
        print(f"{now_text()} {message}", flush=True)

    def is_engine(self, container: dict[str, Any]) -> bool:
        image = str(container.get("image", "")).lower()
        return container.get("name") == "engine" or any(p in image for p in self.config.engine_images)

    def image_defaults(self, image: str) -> tuple[list[str], list[str]] | None:
        """(ENTRYPOINT, CMD) of a project image, None for any other image."""
        repository = image.split("@")[0].rsplit(":", 1)[0] if "/" in image or ":" in image else image
        return next((v for k, v in PROJECT_IMAGES.items() if repository.rsplit("/", 1)[-1] == k), None)

    def node_allocatable(self, node: str) -> dict[str, str]:
        return next(n.capacity() for n in self.config.nodes if n.name == node)

    def allocate_slot(self) -> int:
        slot = next(i for i in range(2, self._net.num_addresses - 1) if i not in self._slots)
        self._slots.add(slot)
        return slot

    def release_slot(self, slot: int) -> None:
        self._slots.discard(slot)

    def slot_ip(self, slot: int) -> str:
        return str(self._net.network_address + slot)

    def mountpoint(self, path: str, is_dir: bool) -> str:
        """Make sure a mount target exists on the host (the containers share the host's root filesystem)."""
        if path.rstrip("/") in ("", "/proc", "/sys", "/dev"):
            raise ValueError(f"refusing to mount over {path!r}")
        target = Path(path)
        if not target.exists():
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
        return path

    def backoff(self, restarts: int) -> float:
        if restarts <= 1:
            return 0.0
        return min(self.config.backoff_cap_s, self.config.backoff_base_s * 2 ** (restarts - 2))

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def post_event(
        self, api: AsyncApi, node: str, pod: dict[str, Any], etype: str, reason: str, message: str
    ) -> None:
        meta, now = pod["metadata"], now_text()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": etype,
            "reason": reason,
            "message": message[:1000],
            "source": {"component": "kubelet", "host": node},
            "reportingComponent": "kubelet",
            "reportingInstance": node,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }

        async def post() -> None:
            with contextlib.suppress(ApiError, OSError):
                await api.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", event)

        self.spawn(post())

    def forget(self, worker: PodWorker) -> None:
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]

    # ---- nodes --------------------------------------------------------------------------------
    def _identity(self, name: str) -> Identity:
        pki = self.config.state / "pki"
        return Identity(self.config.server, pki / "ca.crt", pki / f"{name}.crt", pki / f"{name}.key")

    async def _register(self, api: AsyncApi, node: NodeSpec) -> str:
        labels = {
            "kubernetes.io/hostname": node.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "ltr-test",
            **node.labels,
        }
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node.name, "labels": labels},
            "spec": {"taints": node.taints} if node.taints else {},
        }
        try:
            created = await api.request("POST", "/api/v1/nodes", body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            created = await api.get(f"/api/v1/nodes/{node.name}")
        await self._post_status(api, node)
        return str(created["metadata"]["uid"])

    async def _post_status(self, api: AsyncApi, node: NodeSpec) -> None:
        now = now_text()
        conds = [
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ]
        status = {
            "capacity": node.capacity(),
            "allocatable": node.capacity(),
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": r,
                    "message": m,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": self._since.setdefault((node.name, t), now),
                }
                for t, s, r, m in conds
            ],
            "addresses": [
                {"type": "InternalIP", "address": HOST_IP},
                {"type": "Hostname", "address": node.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": self.config.cluster_id,
                "systemUUID": f"{self.config.cluster_id}-{node.name}",
                "bootID": self.config.cluster_id,
                "kernelVersion": os.uname().release,
                "osImage": "ltr-serving test node agent",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "ltr-test-node-agent://0.1",
                "kubeletVersion": "v1.37.2",
                "kubeProxyVersion": "",
            },
        }
        await api.request("PATCH", f"/api/v1/nodes/{node.name}/status", {"status": status}, STRATEGIC)

    async def _heartbeat(self, api: AsyncApi, node: NodeSpec, node_uid: str) -> None:
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        lease: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": node.name,
                "namespace": "kube-node-lease",
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": node_uid}],
            },
            "spec": {"holderIdentity": node.name, "leaseDurationSeconds": 40},
        }
        last_status = time.monotonic()
        while True:
            renew = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
            try:
                try:
                    await api.request(
                        "PATCH",
                        f"{path}/{node.name}",
                        {"spec": {"renewTime": renew}},
                        "application/merge-patch+json",
                    )
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    await api.request("POST", path, {**lease, "spec": {**lease["spec"], "renewTime": renew}})
                if time.monotonic() - last_status > 60:
                    await self._post_status(api, node)
                    last_status = time.monotonic()
            except (ApiError, OSError) as exc:
                self.log(f"node {node.name}: heartbeat failed: {exc}")
            await asyncio.sleep(10)

    async def _pods(self, api: AsyncApi, node: NodeSpec) -> None:
        async for event in list_and_watch(
            api, "/api/v1/pods", {"fieldSelector": f"spec.nodeName={node.name}"}
        ):
            kind, pod = event["type"], event["object"]
            if kind == "SYNC":
                for w in [
                    w for w in self.workers.values() if w.node == node.name and w.name not in pod["names"]
                ]:
                    w.force_gone()
                continue
            uid = pod["metadata"]["uid"]
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker is not None:
                    worker.force_gone()
            elif worker is not None:
                worker.update(pod)
            elif (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                if pod["metadata"].get("deletionTimestamp"):  # finished before we saw it: just remove it
                    with contextlib.suppress(ApiError):
                        await api.request(
                            "DELETE",
                            f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/"
                            f"{pod['metadata']['name']}",
                            {"gracePeriodSeconds": 0},
                        )
            else:
                self.workers[uid] = PodWorker(self, node.name, api, pod)
                self.workers[uid].update(pod)

    async def run(self, stop: asyncio.Event) -> None:
        self._since: dict[tuple[str, str], str] = {}
        async with contextlib.AsyncExitStack() as stack:
            admin = await stack.enter_async_context(AsyncApi(self._identity("admin")))
            tasks = [asyncio.create_task(storage.recycle_loop(admin, self.log))]
            for node in self.config.nodes:
                api = await stack.enter_async_context(AsyncApi(self._identity(f"node-{node.name}")))
                node_uid = await self._register(api, node)
                tasks += [
                    asyncio.create_task(self._heartbeat(api, node, node_uid)),
                    asyncio.create_task(self._pods(api, node)),
                ]
                self.log(f"node {node.name} registered")
            await stop.wait()
            self.log("stopping: killing every pod's containers")
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(w.shutdown() for w in list(self.workers.values())), return_exceptions=True)


def main(state: Path) -> int:
    config = AgentConfig.load(state)
    agent = NodeAgent(config)

    async def amain() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await agent.run(stop)

    asyncio.run(amain())
    return 0
