"""Closed loop on the kmock harness: retrain results → status, autoPromote gate, pin wins, canary.

The retrain job is simulated by writing its result ConfigMap (loop-retrain-result); sidecars are real
gRPC PredictorAdmin servers (FakeSidecar) on 127.0.0.x that report online Kendall tau per loaded version.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import yaml

from ltr.contract import ANNOTATION_PROMOTED
from ltr_operator import constants as c
from tests.support.operator import FakeSidecar, Http, KopfThread, eventually

NS = "default"
LTRS = f"/apis/ltrserving.dev/v1alpha1/namespaces/{NS}/ltrservings"
DEPLOY = f"/apis/apps/v1/namespaces/{NS}/deployments"
CM = f"/api/v1/namespaces/{NS}/configmaps"
PODS = f"/api/v1/namespaces/{NS}/pods"
EVENTS = f"/api/v1/namespaces/{NS}/events"


RESYNC_SECONDS = 0.3  # the shared `operator` fixture (conftest.py) reads this


def manifest(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "replicas": 3,
        "model": {"name": "m"},
        "predictor": {"store": {"size": "1Gi"}},
        "retraining": {"enabled": True, "autoPromote": True, "minKendallTau": 0.3},
        "sidecar": {"recordPrompts": True},
    }
    for key, value in spec.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return {
        "apiVersion": "ltrserving.dev/v1alpha1",
        "kind": "LTRServing",
        "metadata": {"name": "loop", "namespace": NS},
        "spec": base,
    }


async def report(http: Http, **result: Any) -> None:
    """What `ltr predictor retrain --report-configmap` writes (once the operator made the ConfigMap)."""
    await eventually(lambda: http.get(f"{CM}/loop-retrain-result"))
    empty = {"candidate": "", "candidate_kendall_tau": None, "current_kendall_tau": None, "samples": 0}
    text = json.dumps({**empty, "reason": "", **result})
    await http.patch(f"{CM}/loop-retrain-result", {"data": {c.RETRAIN_RESULT_KEY: text}})


async def config_version(http: Http) -> str | None:
    cm = await http.get(f"{CM}/loop-sidecar")
    return yaml.safe_load(cm["data"][c.CONFIG_KEY])["predictor_version"] if cm else None


async def predictor(http: Http) -> dict[str, Any]:
    obj = await http.get(f"{LTRS}/loop")
    return ((obj or {}).get("status") or {}).get("predictor") or {}


async def events(http: Http, reason: str) -> list[dict[str, Any]]:
    items = (await http.get(EVENTS) or {}).get("items", [])
    return [e for e in items if e.get("reason") == reason]


async def until(check: Any, timeout: float = 30.0) -> Any:
    """`eventually` for a check that returns a coroutine (its 30 s bound: CI runs on 2 loaded cores)."""

    async def probe() -> Any:
        return await check()

    return await eventually(probe, timeout=timeout)


async def test_retrain_results_auto_promotion_and_pin(http: Http, operator: KopfThread) -> None:
    await http.create(LTRS, manifest())
    assert await until(lambda: _eq(config_version(http), ""))  # cold start: bundled predictor
    await report(http, status="insufficient_data", samples=40, reason="40 < minSamples")
    pred = await until(
        lambda: _where(predictor(http), lambda p: p.get("lastRetrainResult") == "insufficient_data")
    )
    assert pred["lastRetrainSamples"] == 40 and pred["source"] == "Bundled" and "candidate" not in pred

    await report(http, status="published", candidate="v1", candidate_kendall_tau=0.52, samples=1500)
    assert await until(lambda: _eq(config_version(http), "v1"))
    pred = await until(lambda: _where(predictor(http), lambda p: p.get("desired") == "v1"))
    assert pred["source"] == "Promoted" and "candidate" not in pred
    assert (await http.get(f"{LTRS}/loop"))["metadata"]["annotations"][ANNOTATION_PROMOTED] == "v1"
    assert await until(lambda: events(http, "PredictorPromoted"))

    # A published candidate that does not beat the current version's tau is kept as candidate only.
    await report(
        http, status="published", candidate="v2", candidate_kendall_tau=0.5, current_kendall_tau=0.55
    )
    pred = await until(lambda: _where(predictor(http), lambda p: p.get("candidate") == "v2"))
    assert pred["candidateKendallTau"] == 0.5 and pred["desired"] == "v1"
    assert await config_version(http) == "v1"

    # A manual pin wins over promotion.
    await http.patch(f"{LTRS}/loop", {"spec": {"predictor": {"version": "v0"}}})
    assert await until(lambda: _eq(config_version(http), "v0"))
    await report(http, status="published", candidate="v3", candidate_kendall_tau=0.9, current_kendall_tau=0.5)
    pred = await until(lambda: _where(predictor(http), lambda p: p.get("candidate") == "v3"))
    assert pred["source"] == "Pinned" and pred["desired"] == "v0"
    await asyncio.sleep(0.7)
    assert await config_version(http) == "v0"


async def _eq(value: Any, expected: Any) -> bool:
    return (await value) == expected


async def _where(value: Any, predicate: Any) -> Any:
    got = await value
    return got if predicate(got) else None


async def _pods(http: Http, sidecars: list[tuple[str, FakeSidecar]], owner_uid: str) -> None:
    dep = await eventually(lambda: http.get(f"{DEPLOY}/loop"))
    labels = dep["spec"]["template"]["metadata"]["labels"]
    for i, (ip, _) in enumerate(sidecars):
        await http.create(
            PODS,
            {
                "metadata": {"name": f"loop-{i}", "labels": labels, "ownerReferences": [{"uid": owner_uid}]},
                "status": {"phase": "Running", "podIP": ip},
            },
        )


async def test_canary_promotes_a_better_candidate_and_rolls_back_a_worse_one(
    http: Http, operator: KopfThread, fake_sidecars: Any
) -> None:
    port, sidecars = await fake_sidecars(3)
    for _, fake in sidecars:
        fake.version, fake.taus[""] = "", (0.2, 60)  # serving the bundled predictor, tau 0.2
        fake.taus["v1"] = (0.45, 30)
    rollout = {
        "strategy": "Canary",
        "canaryReplicas": 1,
        "minKendallTau": 0.3,
        "analysisWindow": "1s",
        "minOnlineSamples": 20,
    }
    owner = await http.create(
        LTRS, manifest(sidecar={"adminPort": port}, predictor={"store": {"size": "1Gi"}, "rollout": rollout})
    )
    await _pods(http, sidecars, owner["metadata"]["uid"])

    await report(http, status="published", candidate="v1", candidate_kendall_tau=0.5, samples=900)
    assert await until(lambda: events(http, "CanaryStarted"))
    canary = await until(lambda: _where(predictor(http), lambda p: (p.get("canary") or {}).get("pods")))
    assert canary["canary"] == {**canary["canary"], "version": "v1", "pods": ["loop-0"]}
    await eventually(lambda: sidecars[0][1].version == "v1")
    assert [fake.version for _, fake in sidecars[1:]] == ["", ""]  # the others keep the current predictor
    assert await config_version(http) == ""  # nothing is promoted during the analysis window
    # After the window: canary tau 0.45 >= gate 0.3 and >= the others' 0.2 → promoted everywhere.
    assert await until(lambda: _eq(config_version(http), "v1"))
    assert await until(lambda: events(http, "CanaryPromoted"))
    pred = await until(
        lambda: _where(predictor(http), lambda p: p.get("desired") == "v1" and "canary" not in p)
    )
    assert pred["source"] == "Promoted"
    for _, fake in sidecars[1:]:
        fake.version = "v1"  # the sidecars hot-reload the new ConfigMap

    # A worse candidate: its canary tau 0.1 is below the gate → rolled back to v1 on the canary pod.
    for _, fake in sidecars:
        fake.taus["v2"] = (0.1, 50)
    await report(http, status="published", candidate="v2", candidate_kendall_tau=0.6, current_kendall_tau=0.5)
    await eventually(lambda: "v2" in sidecars[0][1].loads)
    rolled = await until(lambda: events(http, "CanaryRolledBack"))
    assert "online tau 0.100" in rolled[0]["message"]
    assert sidecars[0][1].version == "v1" and sidecars[0][1].loads[-1] == "v1"
    pred = await until(lambda: _where(predictor(http), lambda p: (p.get("canary") or {}).get("rolledBack")))
    assert pred["canary"]["rolledBack"] == "v2" and pred["desired"] == "v1"
    await asyncio.sleep(0.8)  # not retried on later passes
    assert sidecars[0][1].loads.count("v2") == 1 and await config_version(http) == "v1"
