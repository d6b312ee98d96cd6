"""The LTRServing CRD as the real API server serves it: examples accepted, the project's invalid objects
rejected naming the field (OpenAPI schema and CEL rules), defaults on read-back, printer columns, scale."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.operator.test_crd import CEL_WORDS, INVALID, VALID
from tests.support import chart as crd_tools
from tests.support.cluster.cluster import wait
from tests.support.cluster.release import OperatorRelease

pytestmark = pytest.mark.cluster

# The field each invalid object is rejected for, as kube-apiserver names it (a new INVALID case needs one).
FIELD = {
    "no spec": "spec: Required value",
    "no model name": "spec.model.name: Required value",
    "typo in a field name": 'unknown field "spec.modle"',
    "unknown nested field": 'unknown field "spec.scheduler.starvation"',
    "negative replicas": "spec.replicas: Invalid value: -1",
    "replicas as text": "spec.replicas: Invalid value",
    "unknown engine": 'spec.model.engine: Unsupported value: "triton"',
    "port out of range": "spec.model.port: Invalid value: 70000",
    "unknown policy": 'spec.scheduler.policy: Unsupported value: "sjf"',
    "negative starvation threshold": "spec.scheduler.starvationThreshold: Invalid value",
    "starvation threshold in words": "spec.scheduler.starvationThreshold: Invalid value",
    "zero concurrency": "spec.scheduler.maxConcurrency: Invalid value: 0",
    "concurrency word": 'spec.scheduler.maxConcurrency: Invalid value: "many"',
    "bad version name": 'spec.predictor.version: Invalid value: "v 1"',
    "version without a store": "spec.predictor.version: Required value",
    "retraining without a store": "spec.retraining.enabled: Required value",
    "more canaries than replicas": "spec.predictor.rollout.canaryReplicas: Invalid value",
    "claim and size": "spec.predictor.store: Forbidden",
    "port clash": "spec.sidecar: Invalid value",
    "tau above 1": "spec.retraining.minKendallTau: Invalid value: 1.5",
    "schedule in words": 'spec.retraining.schedule: Invalid value: "every six hours"',
    "time budget in words": 'spec.retraining.timeBudget: Invalid value: "five minutes"',
    "time budget too short": "spec.retraining.timeBudget: Invalid value",
    "unknown encoder": 'spec.retraining.encoder: Unsupported value: "bert-large"',
    "time budget beyond the job deadline": "spec.retraining.timeBudget: Invalid value",
    "retraining without prompts": "spec.sidecar.recordPrompts: Invalid value",
    "custom engine without a command": "spec.model.engine: Required value",
    "empty sidecar image": 'spec.sidecar.image: Invalid value: ""',
    "bad GPU quantity": 'spec.model.resources.limits.nvidia.com/gpu: Invalid value: "lots"',
}


def _examples() -> list[Path]:
    return sorted((crd_tools.REPO_ROOT / "examples").glob("*.yaml"))


def test_every_invalid_case_names_its_field() -> None:
    spec_cases = {n for n, o, _ in INVALID if "status" not in o}
    assert spec_cases == set(FIELD), "add the API server's field for new INVALID cases to FIELD"


@pytest.mark.parametrize("example", _examples(), ids=lambda p: p.name)
def test_every_example_is_accepted_by_the_api_server(
    operator: OperatorRelease, namespace: str, example: Path
) -> None:
    out = operator.cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", str(example), "-o", "json"
    )
    applied = json.loads(out.stdout)
    assert applied["kind"] == "LTRServing" and applied["spec"]["replicas"] >= 1


@pytest.mark.parametrize(
    ("name", "obj", "expected"),
    [c for c in INVALID if "status" not in c[1]],
    ids=[c[0] for c in INVALID if "status" not in c[1]],
)
def test_invalid_objects_are_rejected_by_the_api_server_naming_the_field(
    operator: OperatorRelease, namespace: str, name: str, obj: dict[str, Any], expected: str
) -> None:
    out = operator.cluster.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False
    )
    assert out.returncode != 0, f"{name}: accepted"
    assert FIELD[name] in out.stderr, out.stderr
    if any(word in expected for word in CEL_WORDS):  # a CEL rule: its message reaches the user
        assert expected in out.stderr, out.stderr


def test_status_subresource_validates_conditions(operator: OperatorRelease, namespace: str) -> None:
    cluster = operator.cluster
    obj = {**copy.deepcopy(VALID), "spec": {"model": {"name": "m"}, "replicas": 0}}
    cluster.apply(json.dumps(obj), namespace)
    bad = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "Yes",
                    "reason": "R",
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        }
    }
    out = cluster.kubectl(
        "patch",
        "ltrs",
        "m",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(bad),
        check=False,
    )
    assert out.returncode != 0 and "status.conditions[0].status: Unsupported value" in out.stderr, out.stderr


def test_defaults_on_read_back_equal_the_schema_defaults(operator: OperatorRelease, namespace: str) -> None:
    cluster = operator.cluster
    obj = {**copy.deepcopy(VALID), "spec": {"model": {"name": "m"}, "replicas": 0}}
    cluster.apply(json.dumps(obj), namespace)
    stored = cluster.api.get(f"/apis/ltrserving.dev/v1alpha1/namespaces/{namespace}/ltrservings/m")
    crd = yaml.safe_load((crd_tools.REPO_ROOT / "crds" / "ltrserving.yaml").read_text())
    expected = crd_tools.apply_defaults(crd_tools.crd_version_schema(crd), copy.deepcopy(obj))
    assert stored["spec"] == expected["spec"]  # the server's structural defaulting = the offline model
    spec = stored["spec"]
    assert spec["model"]["port"] == 8000 and spec["model"]["engine"] == "vllm"
    assert spec["scheduler"]["policy"] == "ltr" and spec["scheduler"]["starvationThreshold"] == "5s"
    assert spec["sidecar"]["grpcPort"] == 50051 and spec["sidecar"]["httpPort"] == 8080


def test_kubectl_get_shows_the_printer_columns_and_scale_works(
    operator: OperatorRelease, namespace: str
) -> None:
    cluster = operator.cluster
    obj = {
        **copy.deepcopy(VALID),
        "spec": {"model": {"name": "m"}, "replicas": 0, "scheduler": {"policy": "fcfs"}},
    }
    cluster.apply(json.dumps(obj), namespace)
    wait(
        lambda: "ScaledToZero" in cluster.kubectl("get", "ltrs", "m", "-n", namespace, "-o", "wide").stdout,
        60,
        "the operator's status in the printer columns",
    )
    header, row = cluster.kubectl("get", "ltrs", "-n", namespace, "-o", "wide").stdout.splitlines()[:2]
    assert header.split() == [
        "NAME",
        "READY",
        "REPLICAS",
        "AVAILABLE",
        "PREDICTOR",
        "POLICY",
        "REASON",
        "AGE",
    ]
    assert row.split()[0] == "m" and "fcfs" in row.split()

    cluster.kubectl("scale", "ltrs", "m", "-n", namespace, "--replicas=1")
    scale = json.loads(
        cluster.kubectl("get", "ltrs", "m", "-n", namespace, "--subresource=scale", "-o", "json").stdout
    )
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1
    wait(
        lambda: (
            cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/m")["spec"]["replicas"] == 1
        ),
        60,
        "the Deployment scaled by the operator",
    )
    wait(
        lambda: json.loads(
            cluster.kubectl("get", "ltrs", "m", "-n", namespace, "--subresource=scale", "-o", "json").stdout
        )["status"].get("selector"),
        60,
        "the scale selector",
    )
    cluster.kubectl("scale", "ltrs", "m", "-n", namespace, "--replicas=0")
