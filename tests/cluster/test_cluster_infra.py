"""The cluster tier's own infrastructure against the real control plane: nodes, the real controllers
and scheduler, and the node agent's kubelet behaviour (pods, probes, volumes, Jobs, deletion)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.cluster.cluster import Cluster, is_ready, wait

pytestmark = pytest.mark.cluster

WEB = """
apiVersion: v1
kind: ConfigMap
metadata: {name: web-content}
data: {index.html: "hello v1\\n"}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: python:3.11-slim
        command: ["sh", "-c", "echo \\"$GREETING\\" > /data/$POD_NAME && exec python -m http.server -d /srv"]
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: GREETING, value: "hi from $(POD_IP)"}
        ports: [{name: http, containerPort: 8000}]
        readinessProbe: {httpGet: {path: /index.html, port: http}, periodSeconds: 2}
        securityContext: {runAsUser: 65532, runAsGroup: 65532, readOnlyRootFilesystem: true}
        volumeMounts:
        - {name: content, mountPath: /srv, readOnly: true}
        - {name: data, mountPath: /data}
      volumes:
      - {name: content, configMap: {name: web-content}}
      - {name: data, persistentVolumeClaim: {claimName: data}}
"""


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def test_control_plane_is_real_and_nodes_ready(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert version["gitVersion"].startswith("v1.37"), version
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    nodes = {n["metadata"]["name"]: n for n in cluster.api.get("/api/v1/nodes")["items"]}
    assert set(nodes) == {"cpu-0", "gpu-0"}
    for node in nodes.values():
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    assert nodes["gpu-0"]["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    lease = cluster.api.get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/cpu-0")
    assert lease["spec"]["holderIdentity"] == "cpu-0"
    assert cluster.record["control_plane_ready_s"] < 60, cluster.record


def test_rbac_is_enforced_and_tokens_are_real(cluster: Cluster, namespace: str) -> None:
    kubeconfig = cluster.service_account_kubeconfig(namespace, "default")
    who = cluster.kubectl(
        "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", kubeconfig=kubeconfig
    )
    assert who.stdout == f"system:serviceaccount:{namespace}:default"
    denied = cluster.kubectl("get", "pods", "-n", namespace, kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr


def test_deployment_replicaset_pods_ready_with_volumes(cluster: Cluster, namespace: str) -> None:
    cluster.apply(WEB, namespace)
    pods = cluster.wait_pods(namespace, "app=web", 2)
    rs = cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"]
    assert len(rs) == 1 and rs[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    for pod in pods:
        assert pod["metadata"]["ownerReferences"][0]["name"] == rs[0]["metadata"]["name"]
        assert pod["spec"]["nodeName"] == "cpu-0"  # the scheduler bound it (gpu-0 is tainted)
        ip = pod["status"]["podIP"]
        assert ip.startswith(cluster.record["subnet"].rsplit(".", 2)[0])
        assert http_get(f"http://{ip}:8000/index.html") == "hello v1\n"  # both bind 0.0.0.0:8000
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] and status["started"] and status["restartCount"] == 0
    events = cluster.api.get(f"/api/v1/namespaces/{namespace}/events")["items"]
    assert any(
        e["reason"] == "Scheduled" and e.get("reportingComponent") == "default-scheduler" for e in events
    )
    pvc = cluster.api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data")
    assert pvc["status"]["phase"] == "Bound"
    pv = cluster.api.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
    written = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    for name, ip in written.items():  # downward API env, $(VAR) expansion, the PVC written as uid 65532
        path = f"{pv['spec']['hostPath']['path']}/{name}"
        assert Path(path).read_text() == f"hi from {ip}\n"

    cluster.kubectl(
        "-n",
        namespace,
        "patch",
        "configmap",
        "web-content",
        "--type=merge",
        "-p",
        '{"data": {"index.html": "hello v2\\n"}}',
    )
    ip = pods[0]["status"]["podIP"]
    wait(
        lambda: http_get(f"http://{ip}:8000/index.html") == "hello v2\n",
        30,
        "the ConfigMap update in the pod",
    )


def test_gpu_requests_and_tolerations_schedule_for_real(cluster: Cluster, namespace: str) -> None:
    pod = """
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  terminationGracePeriodSeconds: 1
  TOLERATIONS
  containers:
  - name: main
    image: cuda
    command: ["sleep", "300"]
    resources: {limits: {nvidia.com/gpu: 1}}
"""
    tolerate = "tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]"
    cluster.apply(pod.replace("NAME", "with").replace("TOLERATIONS", tolerate), namespace)
    cluster.apply(pod.replace("NAME", "without").replace("TOLERATIONS", ""), namespace)
    running = wait(
        lambda: [p for p in cluster.pods(namespace) if p["status"].get("phase") == "Running"],
        60,
        "the tolerating GPU pod",
    )
    assert [p["metadata"]["name"] for p in running] == ["with"] and running[0]["spec"]["nodeName"] == "gpu-0"
    pending = cluster.api.get(f"/api/v1/namespaces/{namespace}/pods/without")
    assert pending["status"]["phase"] == "Pending" and not pending["spec"].get("nodeName")
    wait(
        lambda: any(
            e["reason"] == "FailedScheduling" and "nvidia.com/gpu" in e["message"]
            for e in cluster.api.get(f"/api/v1/namespaces/{namespace}/events")["items"]
        ),
        30,
        "FailedScheduling naming the GPU",
    )


def test_jobs_run_to_succeeded_and_failed(cluster: Cluster, namespace: str) -> None:
    job = """
apiVersion: batch/v1
kind: Job
metadata: {name: NAME}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox, command: ["python", "-c", "import sys; sys.exit(CODE)"]}]
"""
    cluster.apply(job.replace("NAME", "ok").replace("CODE", "0"), namespace)
    cluster.apply(job.replace("NAME", "bad").replace("CODE", "3"), namespace)

    def conditions(name: str) -> set[str]:
        status = cluster.api.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}").get("status", {})
        return {c["type"] for c in status.get("conditions", []) if c["status"] == "True"}

    wait(lambda: "Complete" in conditions("ok"), 60, "job ok Complete")
    wait(lambda: "Failed" in conditions("bad"), 60, "job bad Failed")
    bad = cluster.pods(namespace, "job-name=bad")[0]
    assert bad["status"]["phase"] == "Failed"
    assert bad["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert cluster.pods(namespace, "job-name=ok")[0]["status"]["phase"] == "Succeeded"


def test_in_pod_service_account_token_reaches_the_api(cluster: Cluster, namespace: str) -> None:
    script = (
        "import json, os, ssl, urllib.request as u; d = '/var/run/secrets/kubernetes.io/serviceaccount/';"
        "ctx = ssl.create_default_context(cafile=d + 'ca.crt');"
        "url = 'https://%s:%s/apis/authentication.k8s.io/v1/selfsubjectreviews' % ("
        "os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT']);"
        "body = json.dumps({'apiVersion': 'authentication.k8s.io/v1', 'kind': 'SelfSubjectReview'}).encode();"
        "r = u.Request(url, body, {'Authorization': 'Bearer ' + open(d + 'token').read(),"
        " 'Content-Type': 'application/json'});"
        "print(json.load(u.urlopen(r, context=ctx))['status']['userInfo']['username'])"
    )
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "whoami"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "python", "command": ["python", "-c", script]}],
        },
    }
    cluster.apply(json.dumps(manifest), namespace)
    wait(
        lambda: (
            cluster.api.get(f"/api/v1/namespaces/{namespace}/pods/whoami")["status"].get("phase")
            in ("Succeeded", "Failed")
        ),
        60,
        "the whoami pod to finish",
    )
    log = cluster.pod_log(namespace, "whoami", "main")
    assert log.strip() == f"system:serviceaccount:{namespace}:default", log


def test_deletion_sends_sigterm_and_honours_the_grace_period(cluster: Cluster, namespace: str) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, lambda *a: print('TERM', flush=True));"
        "print('up', flush=True); time.sleep(600)"
    )
    for name, grace, command in (
        ("polite", 30, ["sleep", "600"]),
        ("stubborn", 3, ["python", "-c", stubborn]),
    ):
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "terminationGracePeriodSeconds": grace,
                "containers": [{"name": "main", "image": "busybox", "command": command}],
            },
        }
        cluster.apply(json.dumps(manifest), namespace)
    cluster.wait_pods(namespace, "", 2)
    wait(lambda: "up" in cluster.pod_log(namespace, "stubborn", "main"), 30, "the stubborn process to start")
    for name, low, high in (("polite", 0.0, 10.0), ("stubborn", 2.5, 15.0)):
        start = time.monotonic()
        cluster.kubectl("-n", namespace, "delete", "pod", name, "--wait=true", timeout=60)
        took = time.monotonic() - start
        assert low <= took <= high, (name, took)
    assert "TERM" in cluster.pod_log(namespace, "stubborn", "main")


def test_unrunnable_and_crashing_containers_report_like_kubelet(cluster: Cluster, namespace: str) -> None:
    for name, command in (("missing", ["no-such-binary"]), ("crashing", ["sh", "-c", "exit 1"])):
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "example/unknown:1", "command": command}],
            },
        }
        cluster.apply(json.dumps(manifest), namespace)

    def state(name: str) -> dict:
        statuses = cluster.api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")["status"].get(
            "containerStatuses"
        ) or [{}]
        return statuses[0]

    missing = wait(
        lambda: (
            state("missing").get("state", {}).get("waiting", {}).get("reason") == "CreateContainerError"
            and state("missing")
        ),
        60,
        "CreateContainerError",
    )
    assert "no-such-binary" in missing["state"]["waiting"]["message"]
    crashing = wait(
        lambda: (
            state("crashing").get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
            and state("crashing")
        ),
        60,
        "the crashing container in CrashLoopBackOff",
    )
    assert crashing["lastState"]["terminated"]["exitCode"] == 1 and crashing["restartCount"] >= 1
    pod = cluster.api.get(f"/api/v1/namespaces/{namespace}/pods/crashing")
    assert pod["status"]["phase"] == "Running" and not is_ready(pod)


def _late_listener(name: str, image: str, delay_s: int, startup: dict) -> dict:
    """A pod whose `main` container (of `image`) has `startup` as its startup probe on port 7000, where a
    sibling container starts listening only after `delay_s` seconds."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "command": ["python", "-m", "http.server", "8000"],
                    "ports": [{"containerPort": 8000}],
                    "startupProbe": {"tcpSocket": {"port": 7000}, **startup},
                },
                {
                    "name": "late",
                    "image": "python:3.11-slim",
                    "command": ["sh", "-c", f"sleep {delay_s} && exec python -m http.server 7000"],
                },
            ],
        },
    }


def test_startup_probe_deadline_and_engine_stand_in_restart(cluster: Cluster, namespace: str) -> None:
    """The agent runs probes at least every second, but a startup probe keeps the kubelet's deadline
    (failureThreshold x periodSeconds: 10 s here, not 1 x 1 s); an engine stand-in whose startup probe
    fails is restarted like a container (restartCount, lastState) and its probes start over."""
    for manifest in (
        _late_listener("patient", "python:3.11-slim", 4, {"periodSeconds": 10, "failureThreshold": 1}),
        _late_listener("engine", "vllm/vllm-openai:v0.11.0", 4, {"periodSeconds": 1, "failureThreshold": 2}),
    ):
        cluster.apply(json.dumps(manifest), namespace)

    def main(name: str) -> dict | None:
        pod = cluster.api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        ready = is_ready(pod) and pod["status"]["phase"] == "Running"
        return next(s for s in pod["status"]["containerStatuses"] if s["name"] == "main") if ready else None

    patient = wait(lambda: main("patient"), 60, "the patient pod Ready")
    assert patient["restartCount"] == 0 and not patient["lastState"].get("terminated"), patient
    engine = wait(lambda: main("engine"), 60, "the engine stand-in Ready after its restart")
    assert engine["restartCount"] >= 1, engine
    assert engine["lastState"]["terminated"]["exitCode"] == 137, engine
    events = cluster.api.get(f"/api/v1/namespaces/{namespace}/events")["items"]
    assert any(e["reason"] == "Killing" and e["involvedObject"]["name"] == "engine" for e in events)
