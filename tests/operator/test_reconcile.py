"""Operator scenarios on the kmock harness: kopf in a thread, the test plays kubectl and controllers."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest
import yaml

from ltr_operator import constants as c
from ltr_operator.kube import USER_AGENT
from ltr_operator.rbac import KOPF_RULES, OPERATOR_RULES, allows
from tests.support.operator import Http, KopfThread, eventually

NS = "default"
LTRS = f"/apis/ltrserving.dev/v1alpha1/namespaces/{NS}/ltrservings"
DEPLOY = f"/apis/apps/v1/namespaces/{NS}/deployments"
CM = f"/api/v1/namespaces/{NS}/configmaps"
SVC = f"/api/v1/namespaces/{NS}/services"
PVC = f"/api/v1/namespaces/{NS}/persistentvolumeclaims"
PODS = f"/api/v1/namespaces/{NS}/pods"
EVENTS = f"/api/v1/namespaces/{NS}/events"
CRON = f"/apis/batch/v1/namespaces/{NS}/cronjobs"

BASE: dict[str, Any] = {
    "apiVersion": "ltrserving.dev/v1alpha1",
    "kind": "LTRServing",
    "metadata": {"name": "demo", "namespace": NS},
    "spec": {
        "replicas": 2,
        "model": {"name": "tiny-llama", "args": ["--max-model-len", "2048"]},
        "scheduler": {"policy": "ltr", "starvationThreshold": "5s"},
    },
}


def ltrs(**spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    obj["spec"].update(spec)
    return obj


RESYNC_SECONDS = 0.5  # the shared `operator` fixture (conftest.py) reads this


async def field(http: Http, path: str, *keys: Any) -> Any:
    cur = await http.get(path)
    for key in keys:
        if cur is None:
            return None
        cur = (
            cur.get(key)
            if isinstance(cur, dict)
            else (cur[key] if isinstance(key, int) and key < len(cur) else None)
        )
    return cur


async def condition(http: Http, name: str, ctype: str) -> dict[str, Any]:
    conds = await field(http, f"{LTRS}/{name}", "status", "conditions") or []
    return next((cd for cd in conds if cd["type"] == ctype), {})


def sidecar_config(cm: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(cm["data"][c.CONFIG_KEY])


async def play_deployment_controller(http: Http, name: str, ready: int | None = None) -> None:
    """What the Deployment controller would report once the current template is rolled out."""
    dep = await http.get(f"{DEPLOY}/{name}")
    n = dep["spec"]["replicas"] if ready is None else ready
    await http.patch(
        f"{DEPLOY}/{name}/status",
        {
            "status": {
                "observedGeneration": dep["metadata"]["generation"],
                "replicas": n,
                "updatedReplicas": n,
                "readyReplicas": n,
                "availableReplicas": n,
            }
        },
    )


async def test_create_builds_owned_children_and_becomes_ready(http: Http, operator: KopfThread) -> None:
    owner = await http.create(LTRS, ltrs())
    uid = owner["metadata"]["uid"]
    dep = await eventually(lambda: http.get(f"{DEPLOY}/demo"))
    cm = await http.get(f"{CM}/demo-sidecar")
    svc = await eventually(lambda: http.get(f"{SVC}/demo"))
    for child in (dep, cm, svc):
        (ref,) = child["metadata"]["ownerReferences"]
        assert ref["uid"] == uid and ref["controller"] is True and ref["kind"] == "LTRServing"
    engine, sidecar = dep["spec"]["template"]["spec"]["containers"]
    assert engine["image"] == "vllm/vllm-openai:test" and engine["args"][-2:] == ["--max-model-len", "2048"]
    assert sidecar["image"] == "ltr-sidecar:test" and sidecar["securityContext"]["readOnlyRootFilesystem"]
    assert dep["spec"]["replicas"] == 2
    assert {p["name"] for p in svc["spec"]["ports"]} == {"grpc", "http", "metrics"}
    assert sidecar_config(cm)["policy"] == "ltr" and sidecar_config(cm)["predictor_version"] == ""
    assert not await http.get(f"{CRON}/demo-retrain") and not await http.get(f"{PVC}/demo-store")

    ready = await eventually(lambda: condition(http, "demo", c.READY))
    assert ready["status"] == "False" and ready["reason"] in ("RollingOut", "Creating")
    await play_deployment_controller(http, "demo")
    ready = await eventually(lambda: _cond_is(http, "demo", c.READY, "True"))
    status = await field(http, f"{LTRS}/demo", "status")
    assert status["observedGeneration"] == owner["metadata"]["generation"]
    assert status["readyReplicas"] == 2 and status["replicas"] == 2
    assert status["selector"] == f"{c.LABEL_COMPONENT}=engine,{c.LABEL_OWNER}=demo"
    degraded = await condition(http, "demo", c.DEGRADED)
    assert degraded["status"] == "False"
    assert (await condition(http, "demo", c.PREDICTOR_READY))["reason"] == "NoPods"


async def _cond_is(http: Http, name: str, ctype: str, status: str, reason: str | None = None) -> dict | None:
    cond = await condition(http, name, ctype)
    ok = cond.get("status") == status and (reason is None or cond.get("reason") == reason)
    return cond if ok else None


async def test_scaling_and_template_rules(http: Http, operator: KopfThread) -> None:
    await http.create(LTRS, ltrs())
    dep = await eventually(lambda: http.get(f"{DEPLOY}/demo"))
    await play_deployment_controller(http, "demo")
    await eventually(lambda: _cond_is(http, "demo", c.READY, "True"))
    template = dep["spec"]["template"]

    await http.patch(f"{LTRS}/demo", {"spec": {"replicas": 3}})  # scale: replicas only
    dep = await eventually(lambda: _where(http, f"{DEPLOY}/demo", lambda d: d["spec"]["replicas"] == 3))
    assert dep["spec"]["template"] == template
    ready = await eventually(lambda: _cond_is(http, "demo", c.READY, "False"))
    assert ready["reason"] == "RollingOut" and ready["observedGeneration"] == 2

    # Only the predictor version: the ConfigMap changes, the pod template does not (no GPU restart).
    await http.create(PVC, {"metadata": {"name": "shared-store"}, "spec": {}})
    await http.patch(
        f"{LTRS}/demo", {"spec": {"predictor": {"version": "v7", "store": {"existingClaim": "shared-store"}}}}
    )
    await eventually(
        lambda: _where(http, f"{CM}/demo-sidecar", lambda cm: sidecar_config(cm)["predictor_version"] == "v7")
    )

    def store_claim(d: dict) -> str | None:
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        return volumes["store"].get("persistentVolumeClaim", {}).get("claimName")

    # The store did change (a volume change rolls pods); the ConfigMap may be written first.
    dep = await eventually(lambda: _where(http, f"{DEPLOY}/demo", lambda d: store_claim(d) == "shared-store"))
    version_only = dep["spec"]["template"]
    await http.patch(f"{LTRS}/demo", {"spec": {"predictor": {"version": "v8"}}})
    await eventually(
        lambda: _where(http, f"{CM}/demo-sidecar", lambda cm: sidecar_config(cm)["predictor_version"] == "v8")
    )
    await asyncio.sleep(0.3)
    assert (await http.get(f"{DEPLOY}/demo"))["spec"]["template"] == version_only

    # A model/engine args change rolls the pods.
    await http.patch(f"{LTRS}/demo", {"spec": {"model": {"args": ["--max-model-len", "4096"]}}})
    dep = await eventually(
        lambda: _where(http, f"{DEPLOY}/demo", lambda d: d["spec"]["template"] != version_only)
    )
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "4096"
    # A scheduler change rolls the pods too (only the predictor version is hot-reloaded).
    before = dep["spec"]["template"]["metadata"]["annotations"][c.ANNOTATION_CHECKSUM]
    await http.patch(f"{LTRS}/demo", {"spec": {"scheduler": {"policy": "fcfs"}}})
    await eventually(
        lambda: _where(
            http,
            f"{DEPLOY}/demo",
            lambda d: d["spec"]["template"]["metadata"]["annotations"][c.ANNOTATION_CHECKSUM] != before,
        )
    )


async def _where(http: Http, path: str, predicate: Any) -> dict | None:
    obj = await http.get(path)
    return obj if obj is not None and predicate(obj) else None


async def test_deleted_child_is_recreated(http: Http, operator: KopfThread) -> None:
    await http.create(LTRS, ltrs())
    first = await eventually(lambda: http.get(f"{SVC}/demo"))
    await http.request("DELETE", f"{SVC}/demo")
    again = await eventually(lambda: http.get(f"{SVC}/demo"))
    assert again["metadata"]["uid"] != first["metadata"]["uid"]
    first_cm = await http.get(f"{CM}/demo-sidecar")
    await http.request("DELETE", f"{CM}/demo-sidecar")
    again_cm = await eventually(lambda: http.get(f"{CM}/demo-sidecar"))
    assert again_cm["data"] == first_cm["data"]
    # Drift inside a child is repaired too.
    await http.patch(f"{DEPLOY}/demo", {"spec": {"replicas": 9}})
    await eventually(lambda: _where(http, f"{DEPLOY}/demo", lambda d: d["spec"]["replicas"] == 2))


@pytest.mark.parametrize(
    ("spec", "reason", "words"),
    [
        ({"model": {"name": "m", "engine": "sglang"}}, "MissingModelImage", "spec.model.image"),
        (
            {"model": {"name": "m"}, "predictor": {"store": {"existingClaim": "nope"}}},
            "StoreUnavailable",
            "nope",
        ),
        ({"model": {"name": "m", "port": "eighty"}}, "InvalidSpec", "spec.model.port"),
        (
            {
                "model": {"name": "m"},
                "replicas": 1,
                "predictor": {"rollout": {"strategy": "Canary", "canaryReplicas": 3}},
            },
            "InvalidSpec",
            "canaryReplicas",
        ),
    ],
)
async def test_unworkable_spec_is_degraded_without_crash(
    http: Http, operator: KopfThread, spec: dict, reason: str, words: str
) -> None:
    obj = copy.deepcopy(BASE)
    obj["spec"] = spec
    await http.create(LTRS, obj)
    degraded = await eventually(lambda: _cond_is(http, "demo", c.DEGRADED, "True"))
    assert degraded["reason"] == reason and words in degraded["message"]
    ready = await condition(http, "demo", c.READY)
    assert ready["status"] == "False" and ready["reason"] == reason
    events = await eventually(lambda: _events(http, reason))
    assert events[0]["type"] == "Warning" and words in events[0]["message"]
    assert await http.get(f"{DEPLOY}/demo") is None  # nothing half-built
    await asyncio.sleep(1.2)  # several resync periods: still one event (no hot loop), operator alive
    assert len(await _events(http, reason)) == 1
    assert operator.thread.is_alive()
    # Fixing the spec recovers.
    await http.patch(
        f"{LTRS}/demo",
        {"spec": {"model": {"engine": "vllm", "port": 8000}, "predictor": {"store": None, "rollout": None}}},
    )
    await eventually(lambda: http.get(f"{DEPLOY}/demo"))
    await eventually(lambda: _cond_is(http, "demo", c.DEGRADED, "False"))


async def _events(http: Http, reason: str) -> list[dict]:
    items = (await http.get(EVENTS) or {}).get("items", [])
    return [
        e for e in items if e.get("reason") == reason and e.get("involvedObject", {}).get("name") == "demo"
    ]


async def test_delete_cleans_up_through_owner_references(http: Http, operator: KopfThread) -> None:
    await http.create(
        LTRS,
        ltrs(
            predictor={"store": {"size": "1Gi"}},
            retraining={"enabled": True},
            sidecar={"recordPrompts": True},
        ),
    )
    for path in (
        f"{DEPLOY}/demo",
        f"{CM}/demo-sidecar",
        f"{SVC}/demo",
        f"{PVC}/demo-store",
        f"{CRON}/demo-retrain",
    ):
        await eventually(lambda p=path: http.get(p))
    lt = await http.get(f"{LTRS}/demo")
    assert not lt["metadata"].get("finalizers")  # nothing outside the namespace to release
    await http.request("DELETE", f"{LTRS}/demo")
    for path in (
        f"{DEPLOY}/demo",
        f"{CM}/demo-sidecar",
        f"{SVC}/demo",
        f"{PVC}/demo-store",
        f"{CRON}/demo-retrain",
    ):
        await eventually(lambda p=path: _gone(http, p))
    await asyncio.sleep(0.6)  # a resync later nothing came back
    assert await http.get(f"{DEPLOY}/demo") is None


async def test_retraining_children_follow_the_spec(http: Http, operator: KopfThread) -> None:
    await http.create(
        LTRS,
        ltrs(
            predictor={"store": {"size": "2Gi"}},
            retraining={"enabled": True, "schedule": "*/30 * * * *", "minSamples": 50, "timeBudget": "90s"},
            sidecar={"recordPrompts": True},
        ),
    )
    cron = await eventually(lambda: http.get(f"{CRON}/demo-retrain"))
    assert cron["spec"]["schedule"] == "*/30 * * * *"
    job = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    args = job["containers"][0]["args"]
    assert args[:2] == ["predictor", "retrain"] and args[args.index("--min-samples") + 1] == "50"
    assert args[args.index("--report-configmap") + 1] == f"{NS}/demo-retrain-result"
    assert args[args.index("--time-budget") + 1] == "90s"  # the CRD's duration, parsed by the job's CLI
    assert args[args.index("--encoder") + 1] == "minilm"  # the CRD's default: the encoder may compete
    assert await http.get(f"/api/v1/namespaces/{NS}/configmaps/demo-retrain-result") is not None
    assert job["serviceAccountName"] == "demo-retrain"
    role = await http.get(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/demo-retrain")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["demo-retrain-result"],
            "verbs": ["get", "patch"],
        }
    ]  # the job cannot write the LTRServing (its spec picks images and predictors)
    await http.patch(f"{LTRS}/demo", {"spec": {"retraining": {"enabled": False}}})
    await eventually(lambda: _gone(http, f"{CRON}/demo-retrain"))
    await eventually(lambda: _gone(http, f"/api/v1/namespaces/{NS}/configmaps/demo-retrain-result"))
    assert await http.get(f"{PVC}/demo-store") is not None  # data kept


async def _gone(http: Http, path: str) -> bool:
    return await http.get(path) is None


async def test_per_pod_predictor_status_from_sidecars(
    http: Http, operator: KopfThread, fake_sidecars: Any
) -> None:
    port, sidecars = await fake_sidecars(2)
    owner = await http.create(
        LTRS, ltrs(sidecar={"adminPort": port}, predictor={"version": "v2", "store": {"size": "1Gi"}})
    )
    dep = await eventually(lambda: http.get(f"{DEPLOY}/demo"))
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    for i, (ip, _) in enumerate(sidecars):
        await http.create(
            PODS,
            {
                "metadata": {
                    "name": f"demo-pod-{i}",
                    "labels": pod_labels,
                    "ownerReferences": [{"uid": owner["metadata"]["uid"]}],
                },
                "status": {"phase": "Running", "podIP": ip},
            },
        )
    sidecars[0][1].version, sidecars[1][1].version = "v2", "v1"
    sidecars[0][1].tau, sidecars[0][1].samples = 0.61, 40
    await play_deployment_controller(http, "demo")
    cond = await eventually(lambda: _cond_is(http, "demo", c.PREDICTOR_READY, "False"))
    assert cond["reason"] == "PredictorRollingOut" and "1/2 pods serve v2" in cond["message"]
    assert (await condition(http, "demo", c.READY))["status"] == "False"
    pred = await field(http, f"{LTRS}/demo", "status", "predictor")
    assert pred["desired"] == "v2" and pred["source"] == "Pinned" and pred["podsOnCurrent"] == 1
    assert {p["name"]: p["version"] for p in pred["pods"]} == {"demo-pod-0": "v2", "demo-pod-1": "v1"}
    assert (
        pred["pods"][0]["onlineKendallTau"] == pytest.approx(0.61) and pred["pods"][0]["onlineSamples"] == 40
    )
    sidecars[1][1].version = "v2"  # the sidecar hot-reloaded the ConfigMap
    await eventually(lambda: _cond_is(http, "demo", c.PREDICTOR_READY, "True", "AllPodsOnDesired"))
    await eventually(lambda: _cond_is(http, "demo", c.READY, "True"))
    assert (await field(http, f"{LTRS}/demo", "status", "predictor", "current")) == "v2"


async def test_operator_requests_stay_within_its_rbac_rules(
    http: Http, operator: KopfThread, kube: Any
) -> None:
    await http.create(
        LTRS,
        ltrs(
            predictor={"store": {"size": "1Gi"}},
            retraining={"enabled": True},
            sidecar={"recordPrompts": True},
        ),
    )
    await eventually(lambda: http.get(f"{CRON}/demo-retrain"))
    await http.patch(f"{LTRS}/demo", {"spec": {"retraining": {"enabled": False}}})
    await eventually(lambda: _gone(http, f"{CRON}/demo-retrain"))
    await http.request("DELETE", f"{SVC}/demo")
    await eventually(lambda: http.get(f"{SVC}/demo"))
    verbs = {"GET": "get", "POST": "create", "PATCH": "patch", "DELETE": "delete"}
    seen = set()
    for req in list(kube):
        agent = req.headers.get("User-Agent", "")
        if req.resource is None or req.resource.plural is None:
            continue  # discovery: allowed to every authenticated user
        if not (agent.startswith(USER_AGENT) or agent.startswith("kopf")):
            continue
        verb = "watch" if req.params.get("watch") == "true" else verbs[str(req.method.value).upper()]
        verb = "list" if verb == "get" and req.name is None else verb
        plural = req.resource.plural + (f"/{req.subresource}" if req.subresource else "")
        seen.add((req.resource.group, plural, verb))
    assert seen, "no operator requests recorded"
    denied = [s for s in seen if not allows(OPERATOR_RULES + KOPF_RULES, *s)]
    assert not denied, f"requests outside rbac.OPERATOR_RULES: {sorted(denied)}"
    assert ("ltrserving.dev", "ltrservings/status", "patch") in seen and (
        "batch",
        "cronjobs",
        "delete",
    ) in seen


def test_sidecar_config_is_accepted_by_the_sidecar(http: Http) -> None:
    from ltr_operator import builders
    from ltr_operator.spec import parse_spec

    config = pytest.importorskip("ltr_sidecar.server.config")
    spec = parse_spec(
        ltrs(scheduler={"starvationThreshold": "1m30s", "priorityBands": 3, "maxConcurrency": 8})["spec"]
    )
    owner = builders.Owner("demo", NS, "uid")
    cm = builders.build_configmap(owner, spec, builders.Inputs("e", "s", "v3"))
    parsed = config.validate(yaml.safe_load(cm["data"][c.CONFIG_KEY]))
    assert parsed.starvation_threshold == 90.0 and parsed.predictor_version == "v3"
    assert parsed.priority_bands == [0, 1, 2] and parsed.max_concurrency == 8
    assert json.dumps(sorted(yaml.safe_load(cm["data"][c.CONFIG_KEY]))) == json.dumps(
        sorted(config.FIELD_NAMES)
    )
