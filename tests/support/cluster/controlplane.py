"""Start, wait for and stop a real Kubernetes control plane on loopback (test infrastructure).

`up(state)` generates a throw-away PKI, starts etcd, kube-apiserver (RBAC + Node authorization,
NodeRestriction), kube-controller-manager (the real service-account token machinery) and
kube-scheduler from the multi-call `controlplane` binary on random free ports, waits until each is
healthy, writes an admin kubeconfig to `state/kubeconfig` and returns a `Cluster`. Every process is
a daemon recorded under `state/pids`; `down(state)` stops them all (also after a crash) and removes
`state`. The node agent (`nodeagent.py`) and a shared engine are started by `cluster.py`.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.support.cluster import procs
from tests.support.cluster.rest import Api, Identity

SERVICE_CIDR = "10.96.0.0/12"
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service; the node agent forwards it inside every pod
ISSUER = "https://kubernetes.default.svc.cluster.local"
STOP_ORDER = ("node-agent", "engine", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")


class ClusterError(RuntimeError):
    """The control plane did not come up (message has the failing component's log tail)."""


def log_tail(state: Path, name: str, lines: int = 30) -> str:
    path = state / "logs" / f"{name}.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def kubeconfig_for(
    server: str,
    ca: Path,
    user: str,
    cert: Path | None = None,
    key: Path | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """A self-contained kubeconfig (certificates embedded) for `user`."""
    creds: dict[str, str] = {}
    if cert and key:
        creds = {
            "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
            "client-key-data": base64.b64encode(key.read_bytes()).decode(),
        }
    if token:
        creds["token"] = token
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": user,
        "preferences": {},
        "clusters": [
            {
                "name": "ltr-test",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": creds}],
        "contexts": [
            {"name": user, "context": {"cluster": "ltr-test", "user": user, "namespace": "default"}}
        ],
    }


def write_kubeconfig(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def _https_ok(url: str, ctx: ssl.SSLContext, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return resp.status == 200
    except (OSError, ValueError):
        return False


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


def wait_for(
    what: str, check: Any, timeout_s: float, state: Path, component: str, pid: int | None = None
) -> None:
    """Poll `check()` until true; raise ClusterError with the component's log if it dies or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not procs.alive(pid):
            raise ClusterError(f"{component} exited while waiting for {what}:\n{log_tail(state, component)}")
        time.sleep(0.1)
    raise ClusterError(f"timed out after {timeout_s:.0f}s waiting for {what}:\n{log_tail(state, component)}")


AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    # Every request of a ServiceAccount (the operator, the retrain job, in-cluster clients) at Metadata
    # level: the tests read verbs, resources and response codes (e.g. "zero 403s") from it.
    "rules": [{"level": "Metadata", "userGroups": ["system:serviceaccounts"]}, {"level": "None"}],
}


def write_audit_policy(state: Path) -> Path:
    path = state / "audit-policy.yaml"
    path.write_text(yaml.safe_dump(AUDIT_POLICY))
    return path


def audit_events(state: Path, user: str | None = None) -> list[dict[str, Any]]:
    """The API server's audit events so far (complete lines), one per request (ResponseComplete, or
    ResponseStarted for a watch still open), optionally of one user."""
    path = state / "audit.log"
    events: dict[str, dict[str, Any]] = {}
    text = path.read_text() if path.exists() else ""
    # a line without its newline is one the API server is still writing: read it next time
    for line in text[: text.rfind("\n") + 1].splitlines():
        event = json.loads(line)
        if user is None or event["user"]["username"] == user:
            events[event["auditID"]] = event  # a later stage of the same request replaces the earlier
    return list(events.values())


def start(state: Path, binary: Path, nodes: list[str], timeout_s: float = 60.0) -> dict[str, Any]:
    """Start etcd + kube-apiserver + kube-controller-manager + kube-scheduler; returns the cluster record."""
    state.mkdir(parents=True, exist_ok=True)
    pki = state / "pki"
    ports = {k: procs.free_port() for k in ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler")}
    record: dict[str, Any] = {
        "id": secrets.token_hex(3),
        "ports": ports,
        "nodes": nodes,
        "server": f"https://127.0.0.1:{ports['apiserver']}",
        "binary": str(binary),
        "started": time.time(),
    }
    t0 = time.monotonic()
    procs.spawn(
        "pki",
        [str(binary), "pki", "--dir", str(pki), "--nodes", ",".join(nodes), "--service-ip", SERVICE_IP],
        state,
    )
    wait_for(
        "the PKI",
        lambda: (pki / "sa.pub").exists() and not procs.alive(procs.recorded(state)["pki"]),
        30,
        state,
        "pki",
    )
    (state / "pids" / "pki.pid").unlink()
    server = record["server"]
    admin = Identity(server, pki / "ca.crt", pki / "admin.crt", pki / "admin.key")
    write_kubeconfig(state / "kubeconfig", kubeconfig_for(server, admin.ca, "admin", admin.cert, admin.key))
    for comp in ("kube-controller-manager", "kube-scheduler"):
        write_kubeconfig(
            state / "kubeconfigs" / f"{comp}.yaml",
            kubeconfig_for(server, admin.ca, comp, pki / f"{comp}.crt", pki / f"{comp}.key"),
        )
    for node in nodes:
        write_kubeconfig(
            state / "kubeconfigs" / f"node-{node}.yaml",
            kubeconfig_for(
                server, admin.ca, f"system:node:{node}", pki / f"node-{node}.crt", pki / f"node-{node}.key"
            ),
        )

    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    etcd_pid = procs.spawn(
        "etcd",
        [
            str(binary),
            "etcd",
            "--data-dir",
            str(state / "etcd"),
            "--client-url",
            etcd_url,
            "--peer-url",
            f"http://127.0.0.1:{ports['etcd-peer']}",
        ],
        state,
        env={"ETCD_UNSAFE_NO_FSYNC": "true"},
    )
    api_pid = procs.spawn(
        "kube-apiserver",
        [
            str(binary),
            "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",  # loopback may not be advertised; the agent forwards 10.96.0.1
            f"--secure-port={ports['apiserver']}",
            f"--cert-dir={state / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--audit-policy-file={write_audit_policy(state)}",
            f"--audit-log-path={state / 'audit.log'}",
            "--audit-log-format=json",
            "--audit-log-maxsize=200",
            "--profiling=false",
            "--v=1",
        ],
        state,
    )
    wait_for("etcd", lambda: _https_ok(f"{etcd_url}/health", _insecure()), timeout_s, state, "etcd", etcd_pid)
    admin_ctx = admin.ssl_context()
    wait_for(
        "kube-apiserver /readyz",
        lambda: _https_ok(f"{server}/readyz", admin_ctx),
        timeout_s,
        state,
        "kube-apiserver",
        api_pid,
    )
    record["apiserver_ready_s"] = round(time.monotonic() - t0, 2)
    kcm_pid = procs.spawn(
        "kube-controller-manager",
        [
            str(binary),
            "kube-controller-manager",
            f"--kubeconfig={state / 'kubeconfigs' / 'kube-controller-manager.yaml'}",
            f"--authentication-kubeconfig={state / 'kubeconfigs' / 'kube-controller-manager.yaml'}",
            f"--authorization-kubeconfig={state / 'kubeconfigs' / 'kube-controller-manager.yaml'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kcm']}",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*",
            "--v=1",
        ],
        state,
    )
    sched_pid = procs.spawn(
        "kube-scheduler",
        [
            str(binary),
            "kube-scheduler",
            f"--kubeconfig={state / 'kubeconfigs' / 'kube-scheduler.yaml'}",
            f"--authentication-kubeconfig={state / 'kubeconfigs' / 'kube-scheduler.yaml'}",
            f"--authorization-kubeconfig={state / 'kubeconfigs' / 'kube-scheduler.yaml'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['scheduler']}",
            "--leader-elect=false",
            "--v=1",
        ],
        state,
    )
    insecure = _insecure()
    wait_for(
        "kube-controller-manager /healthz",
        lambda: _https_ok(f"https://127.0.0.1:{ports['kcm']}/healthz", insecure),
        timeout_s,
        state,
        "kube-controller-manager",
        kcm_pid,
    )
    wait_for(
        "kube-scheduler /healthz",
        lambda: _https_ok(f"https://127.0.0.1:{ports['scheduler']}/healthz", insecure),
        timeout_s,
        state,
        "kube-scheduler",
        sched_pid,
    )
    api = Api(admin)
    wait_for(
        "the default ServiceAccount and kube-root-ca.crt (token controller, root CA publisher)",
        lambda: (
            api.get("/api/v1/namespaces/default/serviceaccounts/default") is not None
            and api.get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt") is not None
        ),
        timeout_s,
        state,
        "kube-controller-manager",
        kcm_pid,
    )
    record["control_plane_ready_s"] = round(time.monotonic() - t0, 2)
    save(state, record)
    return record


def save(state: Path, record: dict[str, Any]) -> None:
    (state / "cluster.json").write_text(json.dumps(record, indent=2))


def load(state: Path) -> dict[str, Any] | None:
    path = state / "cluster.json"
    return json.loads(path.read_text()) if path.exists() else None


def admin_identity(state: Path, record: dict[str, Any]) -> Identity:
    pki = state / "pki"
    return Identity(record["server"], pki / "ca.crt", pki / "admin.crt", pki / "admin.key")


def node_identity(state: Path, record: dict[str, Any], node: str) -> Identity:
    pki = state / "pki"
    return Identity(record["server"], pki / "ca.crt", pki / f"node-{node}.crt", pki / f"node-{node}.key")


def stop(state: Path, grace_s: float = 15.0) -> None:
    """Stop every process of the cluster (agent first, so pods are stopped properly) and delete `state`."""
    procs.sweep(state, grace_s, STOP_ORDER)
    from tests.support.cluster import netns  # late: netns needs root tools only when there are pods

    record = load(state)
    if record is not None:
        netns.cleanup_cluster(record["id"])
    shutil.rmtree(state, ignore_errors=True)
