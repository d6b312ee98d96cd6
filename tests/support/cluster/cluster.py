"""A whole test cluster: control plane + storage + shared engine + node agent, and a handle for tests.

`up(state)` starts everything as daemons (they outlive the caller; `make cluster-up` exits while
they run) and returns a `Cluster`; `Cluster.attach(state)` reopens a running one; `down(state)`
stops every process and removes `state`. The handle offers the admin API, `kubectl`, a kubeconfig
for any ServiceAccount (a token from the TokenRequest API) and polling helpers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.support.cluster import controlplane, netns, procs, storage, tools
from tests.support.cluster.nodeagent import AgentConfig, NodeSpec, default_nodes
from tests.support.cluster.rest import Api

T = TypeVar("T")
DEFAULT_STATE = tools.REPO_ROOT / ".cluster"


@dataclass
class Cluster:
    """A running test cluster (see the module doc)."""

    state: Path
    record: dict[str, Any]

    @classmethod
    def attach(cls, state: Path = DEFAULT_STATE) -> Cluster:
        record = controlplane.load(state)
        if record is None:
            raise controlplane.ClusterError(f"no cluster at {state} (run `make cluster-up`)")
        return cls(state, record)

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def server(self) -> str:
        return str(self.record["server"])

    @property
    def api(self) -> Api:
        return Api(controlplane.admin_identity(self.state, self.record))

    @property
    def nodes(self) -> list[str]:
        return list(self.record["nodes"])

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster (admin unless `kubeconfig` is given)."""
        cmd = [tools.kubectl(), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def helm(
        self, *args: str, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        """Run helm against this cluster (admin)."""
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.state / "helm"),
            "HELM_CONFIG_HOME": str(self.state / "helm"),
            "HELM_DATA_HOME": str(self.state / "helm"),
        }
        proc = subprocess.run([tools.helm(), *args], capture_output=True, text=True, timeout=timeout, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def token(self, namespace: str, service_account: str, seconds: int = 3600) -> str:
        """A token for the ServiceAccount from the TokenRequest API (as a projected volume gets)."""
        reply = self.api.create(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"audiences": [], "expirationSeconds": seconds},
            },
        )
        return str(reply["status"]["token"])

    def service_account_kubeconfig(
        self, namespace: str, service_account: str, path: Path | None = None, seconds: int = 3600
    ) -> Path:
        """A kubeconfig that authenticates as system:serviceaccount:NAMESPACE:NAME with a real token."""
        path = path or self.state / "kubeconfigs" / f"sa-{namespace}-{service_account}.yaml"
        config = controlplane.kubeconfig_for(
            self.server,
            self.state / "pki" / "ca.crt",
            f"{namespace}-{service_account}",
            token=self.token(namespace, service_account, seconds),
        )
        config["contexts"][0]["context"]["namespace"] = namespace
        return controlplane.write_kubeconfig(path, config)

    def audit(self, user: str | None = None) -> list[dict[str, Any]]:
        """Audit events (Metadata level) of ServiceAccount requests, optionally of one user."""
        return controlplane.audit_events(self.state, user)

    def add_storage_class(self, name: str, volumes: int = 2) -> None:
        storage.create(self.api, self.state, {name: volumes})

    def apply(self, manifest: str, namespace: str | None = None, *extra: str) -> str:
        """`kubectl apply -f -` of a YAML string; returns kubectl's output."""
        ns = ["-n", namespace] if namespace else []
        return self.kubectl("apply", *ns, *extra, "-f", "-", input=manifest).stdout

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        params = {"labelSelector": selector} if selector else {}
        return list(self.api.get(f"/api/v1/namespaces/{namespace}/pods", **params)["items"])

    def wait_pods(
        self, namespace: str, selector: str, count: int, ready: bool = True, timeout_s: float = 90.0
    ) -> list[dict[str, Any]]:
        """Wait until exactly `count` non-terminating pods match, all Running (and Ready)."""

        def check() -> list[dict[str, Any]] | None:
            pods = [p for p in self.pods(namespace, selector) if not p["metadata"].get("deletionTimestamp")]
            ok = len(pods) == count and all(
                p.get("status", {}).get("phase") == "Running" and (not ready or is_ready(p)) for p in pods
            )
            return pods if ok else None

        return wait(check, timeout_s, f"{count} {'ready ' if ready else ''}pods {selector} in {namespace}")

    def pod_log(self, namespace: str, pod: str, container: str) -> str:
        """The container's output as the node agent recorded it (kubectl logs needs a real kubelet)."""
        logs = sorted((self.state / "pods").glob(f"{namespace}_{pod}_*/{container}.log"))
        return logs[-1].read_text(errors="replace") if logs else ""


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def wait(check: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.2) -> T:
    """Poll `check()` until it returns something truthy; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _node_ready(api: Api, name: str) -> bool:
    node = api.get(f"/api/v1/nodes/{name}")
    if node is None:
        return False
    ready = any(
        c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions") or []
    )
    tainted = any(t["key"] == "node.kubernetes.io/not-ready" for t in node["spec"].get("taints") or [])
    return ready and not tainted


def up(
    state: Path = DEFAULT_STATE,
    nodes: list[NodeSpec] | None = None,
    engine: str = "scripted",
    storage_classes: dict[str, int] | None = None,
    timeout_s: float = 90.0,
    verbose: bool = True,
    **agent_options: Any,
) -> Cluster:
    """Start a cluster at `state` (see the module doc); on failure everything started is stopped."""
    if os.geteuid() != 0:
        raise controlplane.ClusterError("the test node agent needs root (network and mount namespaces)")
    if controlplane.load(state) is not None:
        raise controlplane.ClusterError(f"a cluster is already recorded at {state} (run `make cluster-down`)")
    nodes = nodes or default_nodes()
    t0 = time.monotonic()
    binary = tools.ensure_binary(verbose=verbose)
    try:
        record = controlplane.start(state, binary, [n.name for n in nodes], timeout_s)
        admin = Api(controlplane.admin_identity(state, record))
        storage.create(admin, state, storage_classes or {storage.DEFAULT_CLASS: 8})
        engine_address = ""
        if engine == "scripted":
            port = procs.free_port()
            procs.spawn(
                "engine",
                [
                    sys.executable,
                    "-m",
                    "ltr_sidecar.devtools.scripted_engine",
                    "--port",
                    str(port),
                    "--token-delay-ms",
                    "2",
                ],
                state,
            )
            engine_address = f"127.0.0.1:{port}"
            controlplane.wait_for(
                "the shared engine", lambda: _http_ok(f"http://{engine_address}/health"), 60, state, "engine"
            )
        elif engine != "none":
            raise ValueError(f"unknown engine {engine!r} (scripted or none)")
        config = AgentConfig(
            state=state.resolve(),
            cluster_id=record["id"],
            server=record["server"],
            apiserver_port=record["ports"]["apiserver"],
            subnet=str(netns.pick_subnet()),
            engine_address=engine_address,
            nodes=nodes,
            **agent_options,
        )
        config.save()
        pythonpath = os.pathsep.join(p for p in [str(tools.REPO_ROOT), os.environ.get("PYTHONPATH", "")] if p)
        agent_pid = procs.spawn(
            "node-agent",
            [sys.executable, "-m", "tests.support.cluster", "agent", str(state)],
            state,
            env={"PYTHONPATH": pythonpath},
            cwd=tools.REPO_ROOT,
        )
        for node in nodes:
            controlplane.wait_for(
                f"node {node.name} Ready",
                lambda n=node.name: _node_ready(admin, n),
                timeout_s,
                state,
                "node-agent",
                agent_pid,
            )
        record.update(subnet=config.subnet, engine=engine_address, up_s=round(time.monotonic() - t0, 2))
        controlplane.save(state, record)
    except BaseException:
        down(state)
        raise
    return Cluster(state, record)


def down(state: Path = DEFAULT_STATE) -> None:
    controlplane.stop(state)
