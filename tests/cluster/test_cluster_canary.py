"""Canary rollouts on the real control plane with real sidecars: the retrain result is written with the
retrain job's own ServiceAccount, the operator loads the candidate on the canary pod over gRPC, real
traffic gives the online Kendall tau, and the operator promotes or rolls back on that measurement."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ltr.contract import RETRAIN_RESULT_KEY
from tests.support.cluster import ltrs
from tests.support.cluster.cluster import Cluster, wait
from tests.support.cluster.release import OperatorRelease
from tests.support.cluster.tools import REPO_ROOT

pytestmark = pytest.mark.cluster
CANDIDATE = "v2"


def _prompts(n: int = 30) -> list[str]:
    path = REPO_ROOT / "sidecar/ltr_sidecar/data/sample/heldout.jsonl"
    return [json.loads(line)["prompt"][:400] for line in path.read_text().split("\n") if line.strip()][:n]


def _start_canary(cluster: Cluster, namespace: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    spec = ltrs.manifest(
        "m",
        replicas=2,
        sidecar={"recordPrompts": True},
        predictor={
            "store": {"size": "1Gi"},
            "rollout": {
                "strategy": "Canary",
                "canaryReplicas": 1,
                "minKendallTau": 0.2,
                "analysisWindow": "1s",
                "minOnlineSamples": 20,
            },
        },
        retraining={"enabled": True, "schedule": "0 0 1 1 *", "minKendallTau": 0.1, "autoPromote": True},
    )
    cluster.apply(json.dumps(spec), namespace)
    ltrs.wait_ready(cluster, namespace, "m")
    ltrs.publish(cluster, namespace, "m-store", CANDIDATE)
    result = {
        "status": "published",
        "candidate": CANDIDATE,
        "candidate_kendall_tau": 0.5,
        "current_kendall_tau": None,
        "samples": 500,
        "reason": "test",
    }
    job_identity = cluster.service_account_kubeconfig(namespace, "m-retrain")  # the retrain job's Role
    cluster.kubectl(
        "-n",
        namespace,
        "patch",
        "configmap",
        "m-retrain-result",
        "--type=merge",
        "-p",
        json.dumps({"data": {RETRAIN_RESULT_KEY: json.dumps(result)}}),
        kubeconfig=job_identity,
    )
    for forbidden in (  # the job's Role: its result ConfigMap only (issue 13, least privilege)
        ("annotate", "ltrs", "m", "--overwrite", "x=y"),
        ("patch", "configmap", "m-sidecar", "--type=merge", "-p", '{"data":{"x":"y"}}'),
        ("create", "configmap", "other"),
    ):
        denied = cluster.kubectl("-n", namespace, *forbidden, kubeconfig=job_identity, check=False)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), (forbidden, denied.stderr)

    def canary_loaded() -> dict[str, Any] | None:
        predictor = ltrs.get(cluster, namespace, "m").get("status", {}).get("predictor", {})
        names = (predictor.get("canary") or {}).get("pods") or []
        on = {p["name"] for p in predictor.get("pods", []) if p.get("version") == CANDIDATE}
        return predictor if names and set(names) <= on else None

    predictor = wait(canary_loaded, 90, "the candidate loaded on the canary pod")
    pods = ltrs.engine_pods(cluster, namespace, "m")
    canary = [p for p in pods if p["metadata"]["name"] in predictor["canary"]["pods"]]
    return predictor, canary


def _traffic(pods: list[dict[str, Any]], good: bool) -> None:
    """Requests whose real lengths agree (good) or disagree (bad) with the predictor's own ranking."""
    prompts = _prompts()
    scores = ltrs.rank(pods[0], prompts)  # higher = shorter expected answer
    order = sorted(range(len(prompts)), key=lambda i: scores[i], reverse=good)
    lengths = {i: 2 + rank for rank, i in enumerate(order)}
    with ThreadPoolExecutor(4) as pool:
        for pod in pods:
            list(pool.map(lambda i, p=pod: ltrs.complete(p, prompts[i], lengths[i]), range(len(prompts))))


def test_canary_promotes_a_candidate_with_good_online_tau(operator: OperatorRelease, namespace: str) -> None:
    cluster = operator.cluster
    _start_canary(cluster, namespace)
    before = ltrs.identity(cluster, namespace, "m")
    _traffic(ltrs.engine_pods(cluster, namespace, "m"), good=True)
    obj = ltrs.wait_ready(cluster, namespace, "m", version=CANDIDATE, timeout_s=120)
    assert obj["status"]["predictor"]["current"] == CANDIDATE and "canary" not in obj["status"]["predictor"]
    events = cluster.api.get(f"/api/v1/namespaces/{namespace}/events")["items"]
    assert any(e["reason"] == "CanaryPromoted" for e in events)
    assert ltrs.identity(cluster, namespace, "m") == before


def test_canary_rolls_back_a_candidate_with_bad_online_tau(operator: OperatorRelease, namespace: str) -> None:
    cluster = operator.cluster
    _, canary = _start_canary(cluster, namespace)
    _traffic(canary, good=False)

    def rolled_back() -> dict[str, Any] | None:
        predictor = ltrs.get(cluster, namespace, "m")["status"]["predictor"]
        return predictor if (predictor.get("canary") or {}).get("rolledBack") == CANDIDATE else None

    predictor = wait(rolled_back, 120, "the canary rolled back")
    assert "online tau -" in predictor["canary"]["reason"], predictor["canary"]
    obj = ltrs.wait_ready(cluster, namespace, "m", timeout_s=60)
    assert all(p["version"].startswith("bundled") for p in obj["status"]["predictor"]["pods"])
    events = cluster.api.get(f"/api/v1/namespaces/{namespace}/events")["items"]
    assert any(e["reason"] == "CanaryRolledBack" and e["type"] == "Warning" for e in events)
