"""The LTRServing CRD: contract names, a complete structural schema, and rejection of bad objects.

Validation is offline: openapi-schema-validator against the CRD's openAPIV3Schema with unknown fields
made errors (the API server prunes them), then the x-kubernetes-validations CEL rules evaluated with
cel-python on the defaulted object (the API server also runs CEL after defaulting).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from ltr_operator import constants as c
from ltr_operator.spec import parse_spec

VALID: dict[str, Any] = {
    "apiVersion": "ltrserving.dev/v1alpha1",
    "kind": "LTRServing",
    "metadata": {"name": "m"},
    "spec": {"model": {"name": "meta-llama/Llama-3-8B"}},
}


@pytest.fixture(scope="module")
def crd(repo_root: Path) -> dict[str, Any]:
    return yaml.safe_load((repo_root / "crds" / "ltrserving.yaml").read_text())


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any], crd_tools: Any) -> dict[str, Any]:
    return crd_tools.crd_version_schema(crd, c.VERSION)


@pytest.fixture(scope="module")
def check(schema: dict[str, Any], crd_tools: Any) -> Any:
    validator = OAS30Validator(crd_tools.strict_schema(schema))

    def problems(obj: dict[str, Any]) -> list[str]:
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
        if errors:
            return errors
        return crd_tools.cel_violations(schema, crd_tools.apply_defaults(schema, obj))

    return problems


def test_contract_names_and_subresources(crd: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{c.PLURAL}.{c.GROUP}" and spec["group"] == c.GROUP
    assert spec["names"]["kind"] == c.KIND and spec["names"]["plural"] == c.PLURAL
    assert spec["names"]["shortNames"] == ["ltrs"] and spec["scope"] == "Namespaced"
    (version,) = spec["versions"]
    assert version["name"] == c.VERSION and version["served"] and version["storage"]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert version["subresources"]["scale"]["labelSelectorPath"] == ".status.selector"
    columns = [col["name"] for col in version["additionalPrinterColumns"]]
    for name in ("Ready", "Replicas", "Predictor", "Policy", "Age"):
        assert name in columns


def test_every_field_is_typed_and_described(schema: dict[str, Any]) -> None:
    missing: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for key, sub in node.get("properties", {}).items():
            where = f"{path}.{key}"
            if key not in ("apiVersion", "kind", "metadata") and not sub.get("description"):
                missing.append(f"{where}: no description")
            if "type" not in sub and not sub.get("x-kubernetes-int-or-string"):
                missing.append(f"{where}: no type")
            walk(sub, where)
            if isinstance(sub.get("items"), dict):
                walk(sub["items"], where + "[]")

    walk(schema, "")
    assert not missing, missing


def test_status_conditions_have_the_metav1_shape(schema: dict[str, Any]) -> None:
    cond = schema["properties"]["status"]["properties"]["conditions"]
    assert cond["x-kubernetes-list-map-keys"] == ["type"]
    assert set(cond["items"]["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}


def test_crd_defaults_match_the_operators_defaults(schema: dict[str, Any], crd_tools: Any) -> None:
    # An object defaulted by the API server and one that skipped defaulting parse to the same spec.
    for spec in (
        VALID["spec"],
        {
            "model": {"name": "x"},
            "predictor": {"store": {"size": "1Gi"}},
            "retraining": {"enabled": True},
            "sidecar": {"recordPrompts": True},
        },
    ):
        defaulted = crd_tools.apply_defaults(schema, {"spec": spec})["spec"]
        assert parse_spec(defaulted) == parse_spec(spec)


def test_valid_objects_and_examples_pass(check: Any, repo_root: Path) -> None:
    assert check(VALID) == []
    full = copy.deepcopy(VALID)
    full["spec"].update(
        replicas=4,
        predictor={
            "version": "v3",
            "store": {"existingClaim": "preds"},
            "rollout": {"strategy": "Canary", "canaryReplicas": 1},
        },
        scheduler={"policy": "fcfs", "starvationThreshold": "1m30s", "maxConcurrency": 16},
        retraining={"enabled": True, "schedule": "@hourly", "minKendallTau": 0.5},
        sidecar={"recordPrompts": True, "adminPort": 7000, "metricsPort": 7001},
        networkPolicy={"clients": [{"podSelector": {"matchLabels": {"role": "gateway"}}}]},
    )
    assert check(full) == []
    examples = sorted((repo_root / "examples").glob("*.yaml"))
    for path in examples:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == c.KIND:
                assert check(doc) == [], path.name
                parse_spec(doc["spec"])  # the operator accepts what the API server accepts


def _with(path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(VALID)
    cur = obj
    keys = path.split(".")
    for key in keys[:-1]:
        cur = cur.setdefault(key, {})
    if value is _DELETE:
        cur.pop(keys[-1], None)
    else:
        cur[keys[-1]] = value
    return obj


_DELETE = object()

#: words only the CRD's CEL rule messages use: an INVALID case expecting one is a CEL rejection
CEL_WORDS = (
    "requires",
    "must not exceed",
    "either",
    "must all differ",
    "needs",
    "maxConcurrency",
    "at least 10s",
    "must be shorter than",
)

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no spec", _with("spec", _DELETE), "'spec' is a required property"),
    ("no model name", _with("spec.model.name", _DELETE), "'name' is a required property"),
    ("typo in a field name", _with("spec.modle", {"name": "x"}), "'modle' was unexpected"),
    ("unknown nested field", _with("spec.scheduler.starvation", "5s"), "'starvation' was unexpected"),
    ("negative replicas", _with("spec.replicas", -1), "less than the minimum of 0"),
    ("replicas as text", _with("spec.replicas", "two"), "is not of type 'integer'"),
    ("unknown engine", _with("spec.model.engine", "triton"), "is not one of"),
    ("port out of range", _with("spec.model.port", 70000), "greater than the maximum of 65535"),
    ("unknown policy", _with("spec.scheduler.policy", "sjf"), "is not one of ['ltr', 'fcfs']"),
    ("negative starvation threshold", _with("spec.scheduler.starvationThreshold", "-5s"), "does not match"),
    ("starvation threshold in words", _with("spec.scheduler.starvationThreshold", "five"), "does not match"),
    ("zero concurrency", _with("spec.scheduler.maxConcurrency", 0), 'maxConcurrency must be "auto"'),
    ("concurrency word", _with("spec.scheduler.maxConcurrency", "many"), 'maxConcurrency must be "auto"'),
    ("bad version name", _with("spec.predictor.version", "v 1"), "does not match"),
    (
        "version without a store",
        _with("spec.predictor.version", "v1"),
        "predictor.version requires predictor.store",
    ),
    (
        "retraining without a store",
        _with("spec.retraining", {"enabled": True}),
        "retraining.enabled requires predictor.store",
    ),
    (
        "more canaries than replicas",
        _with(
            "spec",
            {
                "model": {"name": "m"},
                "replicas": 2,
                "predictor": {"rollout": {"strategy": "Canary", "canaryReplicas": 3}},
            },
        ),
        "canaryReplicas must not exceed replicas",
    ),
    (
        "claim and size",
        _with("spec.predictor", {"store": {"existingClaim": "a", "size": "1Gi"}}),
        "either store.existingClaim or store.size",
    ),
    ("port clash", _with("spec.sidecar", {"grpcPort": 8000}), "must all differ"),
    ("tau above 1", _with("spec.retraining", {"minKendallTau": 1.5}), "greater than the maximum of 1"),
    ("schedule in words", _with("spec.retraining", {"schedule": "every six hours"}), "does not match"),
    ("time budget in words", _with("spec.retraining", {"timeBudget": "five minutes"}), "does not match"),
    ("time budget too short", _with("spec.retraining", {"timeBudget": "2s"}), "must be at least 10s"),
    ("unknown encoder", _with("spec.retraining", {"encoder": "bert-large"}), "is not one of"),
    (
        "time budget beyond the job deadline",
        _with("spec.retraining", {"timeBudget": "2h", "activeDeadlineSeconds": 3600}),
        "timeBudget must be shorter than retraining.activeDeadlineSeconds",
    ),
    (
        "retraining without prompts",
        _with(
            "spec",
            {
                "model": {"name": "m"},
                "predictor": {"store": {"size": "1Gi"}},
                "retraining": {"enabled": True},
                "sidecar": {"recordPrompts": False},
            },
        ),
        "requires sidecar.recordPrompts=true",
    ),
    (
        "custom engine without a command",
        _with("spec.model.engine", "custom"),
        "engine custom needs model.command",
    ),
    ("empty sidecar image", _with("spec.sidecar", {"image": ""}), "should be non-empty"),
    (
        "bad GPU quantity",
        _with("spec.model.resources", {"limits": {"nvidia.com/gpu": "lots"}}),
        "does not match",
    ),
    (
        "bad condition status",
        _with(
            "status",
            {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "Yes",
                        "reason": "R",
                        "message": "",
                        "lastTransitionTime": "x",
                    }
                ]
            },
        ),
        "is not one of ['True', 'False', 'Unknown']",
    ),
]


@pytest.mark.parametrize(("obj", "expected"), [(o, e) for _, o, e in INVALID], ids=[n for n, _, _ in INVALID])
def test_invalid_objects_are_rejected_with_a_useful_message(
    check: Any, obj: dict[str, Any], expected: str
) -> None:
    problems = check(obj)
    assert problems, "accepted an invalid object"
    assert any(expected in p for p in problems), problems


def test_operator_rechecks_the_cel_rules(schema: dict[str, Any], crd_tools: Any) -> None:
    # Objects that bypassed API validation: every CEL rejection above is also a SpecError in the operator.
    from ltr_operator.spec import SpecError

    cel_cases = [(n, o) for n, o, e in INVALID if e and any(word in e for word in CEL_WORDS)]
    assert len(cel_cases) >= 8
    for name, obj in cel_cases:
        with pytest.raises(SpecError):
            parse_spec(obj["spec"])
        assert crd_tools.cel_violations(schema, crd_tools.apply_defaults(schema, obj)), name
