"""The operator's journey on the real control plane: reconcile through the real controllers and the node
agent, per-pod predictor status from real sidecars, predictor rollout without restarts, drift repair,
server-side apply of children, garbage collection, and an operator restart in the middle of a rollout.
The operator runs in-cluster as the chart's ServiceAccount; any 403 it gets fails the test."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.cluster import ltrs
from tests.support.cluster.cluster import wait
from tests.support.cluster.release import OperatorRelease

pytestmark = pytest.mark.cluster


def _owned_by(obj: dict, kind: str, uid: str) -> bool:
    return any(
        r["kind"] == kind and r["uid"] == uid and r.get("controller")
        for r in obj["metadata"].get("ownerReferences") or []
    )


def test_reconcile_creates_owned_children_and_status_converges(
    operator: OperatorRelease, namespace: str
) -> None:
    cluster = operator.cluster
    cluster.apply(json.dumps(ltrs.manifest("m", replicas=2)), namespace)
    obj = ltrs.wait_ready(cluster, namespace, "m")
    uid = obj["metadata"]["uid"]
    base = f"/api/v1/namespaces/{namespace}"
    for path in (
        f"{base}/configmaps/m-sidecar",
        f"{base}/services/m",
        f"{base}/persistentvolumeclaims/m-store",
        f"/apis/apps/v1/namespaces/{namespace}/deployments/m",
    ):
        assert _owned_by(cluster.api.get(path), "LTRServing", uid), path
    deployment = cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/m")
    (rs,) = [r for r in cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"]]
    assert _owned_by(rs, "Deployment", deployment["metadata"]["uid"])  # the real Deployment controller
    pods = ltrs.engine_pods(cluster, namespace, "m")
    assert len(pods) == 2 and all(_owned_by(p, "ReplicaSet", rs["metadata"]["uid"]) for p in pods)
    assert all(len(p["status"]["containerStatuses"]) == 2 for p in pods)
    status = obj["status"]
    assert status["readyReplicas"] == 2 and status["observedGeneration"] == obj["metadata"]["generation"]
    assert ltrs.condition(obj, "Ready")["reason"] == "Serving"
    assert ltrs.condition(obj, "PredictorReady")["reason"] == "BundledPredictor"
    # Per-pod versions come from the real sidecars' GetPredictor at podIP:50051.
    assert sorted(p["name"] for p in status["predictor"]["pods"]) == sorted(
        p["metadata"]["name"] for p in pods
    )
    assert all(p["version"].startswith("bundled") for p in status["predictor"]["pods"])
    assert cluster.api.get(f"{base}/persistentvolumeclaims/m-store")["status"]["phase"] == "Bound"
    # A request through a pod's sidecar reaches the engine (in-pod 127.0.0.1:8000 → shared engine).
    answer = ltrs.complete(pods[0], "hello")
    assert answer["usage"]["completion_tokens"] == 4


def test_predictor_rollout_hot_reloads_without_restarting_pods(
    operator: OperatorRelease, namespace: str
) -> None:
    cluster = operator.cluster
    cluster.apply(json.dumps(ltrs.manifest("m", replicas=2)), namespace)
    ltrs.wait_ready(cluster, namespace, "m")
    before = ltrs.identity(cluster, namespace, "m")
    for version in ("v1", "v2"):
        ltrs.publish(cluster, namespace, "m-store", version)
        cluster.kubectl(
            "-n",
            namespace,
            "patch",
            "ltrs",
            "m",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"predictor": {"version": version}}}),
        )
        obj = ltrs.wait_ready(cluster, namespace, "m", version=version)
        assert obj["status"]["predictor"]["current"] == version
        assert obj["status"]["predictor"]["podsOnCurrent"] == 2
        assert ltrs.identity(cluster, namespace, "m") == before  # same pods, no restart, same ReplicaSet


def test_drift_is_repaired(operator: OperatorRelease, namespace: str) -> None:
    cluster = operator.cluster
    cluster.apply(json.dumps(ltrs.manifest("m", replicas=1)), namespace)
    ltrs.wait_ready(cluster, namespace, "m")
    base = f"/api/v1/namespaces/{namespace}"
    config = cluster.api.get(f"{base}/configmaps/m-sidecar")["data"]
    cluster.kubectl("-n", namespace, "delete", "service", "m")
    cluster.kubectl(
        "-n",
        namespace,
        "patch",
        "configmap",
        "m-sidecar",
        "--type=merge",
        "-p",
        json.dumps({"data": {"sidecar.yaml": "policy: fcfs\n"}}),
    )
    cluster.kubectl("-n", namespace, "scale", "deployment", "m", "--replicas=3")
    wait(lambda: cluster.api.get(f"{base}/services/m"), 60, "the deleted Service recreated")
    wait(
        lambda: cluster.api.get(f"{base}/configmaps/m-sidecar")["data"] == config,
        60,
        "the ConfigMap repaired",
    )
    wait(
        lambda: (
            cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/m")["spec"]["replicas"] == 1
        ),
        60,
        "the Deployment scaled back to spec.replicas",
    )
    ltrs.wait_ready(cluster, namespace, "m")


def test_a_field_removed_from_the_spec_disappears_from_the_child(
    operator: OperatorRelease, namespace: str
) -> None:
    cluster = operator.cluster
    spec = ltrs.manifest(
        "m", replicas=0, service={"annotations": {"example.com/keep": "1", "example.com/drop": "2"}}
    )
    cluster.apply(json.dumps(spec), namespace)
    path = f"/api/v1/namespaces/{namespace}/services/m"
    wait(
        lambda: (
            (cluster.api.get(path) or {}).get("metadata", {}).get("annotations", {}).get("example.com/drop")
        ),
        60,
        "the Service annotations",
    )
    cluster.kubectl(
        "-n",
        namespace,
        "patch",
        "ltrs",
        "m",
        "--type=json",
        "-p",
        json.dumps([{"op": "remove", "path": "/spec/service/annotations/example.com~1drop"}]),
    )
    wait(
        lambda: "example.com/drop" not in cluster.api.get(path)["metadata"].get("annotations", {}),
        60,
        "the removed annotation gone from the Service",
    )
    assert cluster.api.get(path)["metadata"]["annotations"]["example.com/keep"] == "1"
    managers = {m["manager"] for m in cluster.api.get(path)["metadata"]["managedFields"]}
    assert "ltr-operator" in managers


def test_deleting_the_ltrserving_garbage_collects_its_children(
    operator: OperatorRelease, namespace: str
) -> None:
    cluster = operator.cluster
    cluster.apply(json.dumps(ltrs.manifest("m", replicas=1)), namespace)
    ltrs.wait_ready(cluster, namespace, "m")
    cluster.kubectl("-n", namespace, "delete", "ltrs", "m", "--wait=true", timeout=60)
    base = f"/api/v1/namespaces/{namespace}"
    for what in ("configmaps", "services", "persistentvolumeclaims", "pods"):
        wait(
            lambda w=what: (
                not [
                    i
                    for i in cluster.api.get(f"{base}/{w}")["items"]
                    if i["metadata"].get("labels", {}).get("ltrserving.dev/ltrserving") == "m"
                ]
            ),
            90,
            f"{what} garbage-collected",
        )
    for what in ("deployments", "replicasets"):
        wait(
            lambda w=what: not cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/{w}")["items"],
            90,
            f"{what} garbage-collected",
        )


def test_operator_restart_mid_rollout_resumes(operator: OperatorRelease, namespace: str) -> None:
    cluster = operator.cluster
    cluster.apply(json.dumps(ltrs.manifest("m", replicas=1)), namespace)
    ltrs.wait_ready(cluster, namespace, "m")
    ltrs.publish(cluster, namespace, "m-store", "v7")
    old = operator.pod()["metadata"]["name"]
    cluster.kubectl(
        "-n",
        namespace,
        "patch",
        "ltrs",
        "m",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"predictor": {"version": "v7"}}}),
    )
    time.sleep(0.3)  # the operator has seen the change and is in the middle of it
    cluster.kubectl("-n", operator.namespace, "delete", "pod", old, "--wait=false")
    wait(lambda: operator.pod()["metadata"]["name"] != old, 90, "a new operator pod")
    obj = ltrs.wait_ready(cluster, namespace, "m", version="v7")
    assert obj["status"]["predictor"]["current"] == "v7"
