"""Helpers for the operator journey tests: LTRServing manifests, waiting on status, the predictor
store behind a PVC, and talking to real sidecars at their pod IPs (as the operator does)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import grpc

from ltr.v1 import scheduler_pb2, scheduler_pb2_grpc
from tests.support.cluster.cluster import Cluster, is_ready, wait

API = "/apis/ltrserving.dev/v1alpha1"


def manifest(name: str, replicas: int = 1, store: bool = True, **spec: Any) -> dict[str, Any]:
    """A small LTRServing: vLLM image (played by the shared engine), fast config polling."""
    body: dict[str, Any] = {
        "replicas": replicas,
        "model": {
            "name": "tiny/model",
            "engine": "vllm",
            "image": "vllm/vllm-openai:v0.11.0",
            "startupTimeoutSeconds": 60,
        },
        "scheduler": {"maxConcurrency": 2},
        "sidecar": {"configPollSeconds": 1, "drainGracePeriodSeconds": 1},
    }
    if store:
        body["predictor"] = {"store": {"size": "1Gi"}}
    for key, value in spec.items():
        body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) else value
    return {
        "apiVersion": "ltrserving.dev/v1alpha1",
        "kind": "LTRServing",
        "metadata": {"name": name},
        "spec": body,
    }


def get(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(cluster.api.get(f"{API}/namespaces/{namespace}/ltrservings/{name}") or {})


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), {})


def wait_ready(
    cluster: Cluster, namespace: str, name: str, timeout_s: float = 150.0, version: str | None = None
) -> dict[str, Any]:
    """Until Ready=True for the current generation (and every pod serves `version` when given)."""

    seen: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        obj = get(cluster, namespace, name)
        ready = condition(obj, "Ready")
        seen.update(ready=ready, generation=obj["metadata"]["generation"])
        if ready.get("status") != "True" or ready.get("observedGeneration") != obj["metadata"]["generation"]:
            return None
        pods = (obj["status"].get("predictor") or {}).get("pods") or []
        if version is not None and (not pods or any(p.get("version") != version for p in pods)):
            return None
        return obj

    try:
        return wait(
            check,
            timeout_s,
            f"LTRServing {namespace}/{name} Ready" + (f" on {version}" if version else ""),
            interval_s=0.5,
        )
    except AssertionError as e:  # name what the operator last reported, not only "None"
        raise AssertionError(f"{e}; last seen: {seen}") from None


def engine_pods(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    pods = cluster.pods(namespace, f"ltrserving.dev/ltrserving={name},app.kubernetes.io/component=engine")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def store_dir(cluster: Cluster, namespace: str, claim: str) -> Path:
    """The host directory behind the claim's PV (hostPath): the store is `predictors/` in it."""
    pvc = wait(
        lambda: cluster.api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}"),
        30,
        f"PVC {claim}",
    )
    bound = wait(
        lambda: (
            (cluster.api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}") or {})
            .get("spec", {})
            .get("volumeName")
        ),
        90,
        f"PVC {claim} bound",
    )
    assert pvc
    pv = cluster.api.get(f"/api/v1/persistentvolumes/{bound}")
    return Path(pv["spec"]["hostPath"]["path"])


def publish(cluster: Cluster, namespace: str, claim: str, version: str) -> None:
    """Publish the bundled artifact as `version` into the store (what an admin or a retrain job does)."""
    from ltr_sidecar.predictor.runtime.registry import bundled_predictor_path
    from ltr_sidecar.predictor.runtime.store import open_store

    store = open_store(store_dir(cluster, namespace, claim) / "predictors")
    if version not in {v.version for v in store.list_versions()}:
        store.publish(bundled_predictor_path(), version)


def complete(
    pod: dict[str, Any], prompt: str, max_tokens: int = 4, port: int = 8080, model: str = "tiny/model"
) -> dict[str, Any]:
    """One non-streaming completion through the pod's sidecar (OpenAI HTTP) to the engine."""
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens}).encode()
    request = urllib.request.Request(
        f"http://{pod['status']['podIP']}:{port}/v1/completions", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return dict(json.load(resp))


def rank(pod: dict[str, Any], prompts: list[str], port: int = 50051) -> list[float]:
    """Scores of `prompts` from the pod's sidecar (Scheduler.Rank; higher = shorter expected answer)."""
    with grpc.insecure_channel(f"{pod['status']['podIP']}:{port}") as channel:
        reply = scheduler_pb2_grpc.SchedulerStub(channel).Rank(
            scheduler_pb2.RankRequest(prompts=prompts), timeout=10
        )
    return list(reply.scores)


def identity(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """What a restart would change: pod uids, their restart counts, the ReplicaSets and the template."""
    pods = engine_pods(cluster, namespace, name)
    rs = cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"]
    dep = cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
    return {
        "pods": sorted(p["metadata"]["uid"] for p in pods),
        "restarts": sum(s["restartCount"] for p in pods for s in p["status"].get("containerStatuses", [])),
        "replicasets": sorted(r["metadata"]["name"] for r in rs if r["spec"].get("replicas")),
        "template_generation": dep["metadata"]["generation"],
        "ready": all(is_ready(p) for p in pods),
    }
