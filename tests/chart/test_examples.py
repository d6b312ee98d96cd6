"""Every examples/*.yaml LTRServing validates against the CRD (schema with unknown fields as errors,
API-server defaulting, and the CRD's CEL rules), and the examples cover the documented scenarios."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator, oas30_format_checker

from tests.support.chart import (
    CRD_FILE,
    CRD_VERSION,
    EXAMPLES_DIR,
    apply_defaults,
    cel_violations,
    crd_version_schema,
    load_yaml_docs,
    strict_schema,
)

EXAMPLE_FILES = sorted(EXAMPLES_DIR.glob("*.yaml"))
DNS1123 = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    (doc,) = load_yaml_docs(CRD_FILE)
    return doc


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd_version_schema(crd)


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> OAS30Validator:
    return OAS30Validator(strict_schema(schema), format_checker=oas30_format_checker)


def problems(
    obj: dict[str, Any], crd: dict[str, Any], schema: dict[str, Any], validator: OAS30Validator
) -> list[str]:
    """Everything the API server would reject: identity, schema (strict), then CEL on the defaulted object."""
    out = []
    api_version, kind = f"{crd['spec']['group']}/{CRD_VERSION}", crd["spec"]["names"]["kind"]
    if obj.get("apiVersion") != api_version or obj.get("kind") != kind:
        out.append(f"apiVersion/kind {obj.get('apiVersion')}/{obj.get('kind')} is not this CRD's")
    out += [f"{'.'.join(map(str, e.absolute_path)) or '.'}: {e.message}" for e in validator.iter_errors(obj)]
    if not out:
        out += cel_violations(schema, apply_defaults(schema, obj))
    return out


def test_examples_exist() -> None:
    assert len(EXAMPLE_FILES) >= 3, f"expected >= 3 LTRServing examples in {EXAMPLES_DIR}"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_validates_against_crd(
    path: Path, crd: dict[str, Any], schema: dict[str, Any], validator: OAS30Validator
) -> None:
    docs = load_yaml_docs(path)
    assert docs, f"{path.name} holds no manifest"
    for obj in docs:
        assert obj.get("metadata", {}).get("name"), f"{path.name}: metadata.name missing"
        assert "namespace" not in obj["metadata"], f"{path.name}: examples apply to the current namespace"
        assert re.match(DNS1123, obj["metadata"]["name"]), f"{path.name}: name is not a DNS-1123 label"
        assert problems(obj, crd, schema, validator) == [], path.name


def _specs() -> dict[str, dict[str, Any]]:
    return {p.name: load_yaml_docs(p)[0]["spec"] for p in EXAMPLE_FILES}


def _gpus(spec: dict[str, Any]) -> int:
    limits = spec["model"].get("resources", {}).get("limits", {})
    return int(limits.get("nvidia.com/gpu", 0))


def test_examples_cover_the_documented_scenarios() -> None:
    specs = _specs()
    minimal = [
        n
        for n, s in specs.items()
        if s["model"].get("engine", "vllm") == "vllm"
        and "Llama-3-8B-Instruct" in s["model"]["name"]
        and _gpus(s) == 1
        and s.get("replicas", 1) == 1
    ]
    cpu_only = [n for n, s in specs.items() if _gpus(s) == 0 and "nvidia.com/gpu" not in str(s)]
    canary = [
        n
        for n, s in specs.items()
        if s.get("predictor", {}).get("rollout", {}).get("strategy") == "Canary"
        and s.get("retraining", {}).get("enabled") is True
    ]
    assert minimal, "no minimal vLLM + Llama-3-8B-Instruct on 1 GPU example"
    assert cpu_only, "no CPU-only example"
    assert canary, "no canary rollout + retraining example"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s.update(replicaz=2), "replicaz"),  # typo: unknown field is an error
        (lambda s: s["model"].update(gpu=1), "gpu"),
        (lambda s: s.setdefault("scheduler", {}).update(policy="sjf"), "sjf"),
        (lambda s: s.update(replicas=-1), "-1"),
        (lambda s: s.setdefault("scheduler", {}).update(maxConcurrency=0), "maxConcurrency"),
        (lambda s: s.setdefault("predictor", {}).update(version="v3"), "predictor.store"),
        (lambda s: s.update(retraining={"enabled": True}), "predictor.store"),
        (
            lambda s: s.update(
                predictor={"store": {"size": "1Gi"}, "rollout": {"strategy": "Canary", "canaryReplicas": 3}}
            ),
            "canaryReplicas",
        ),
    ],
    ids=[
        "unknown-top",
        "unknown-nested",
        "bad-enum",
        "negative",
        "cel-int-or-auto",
        "cel-pin-needs-store",
        "cel-retrain-needs-store",
        "cel-canary-exceeds-replicas",
    ],
)
def test_validation_rejects_broken_examples(
    mutate: Callable[[dict[str, Any]], None],
    expected: str,
    crd: dict[str, Any],
    schema: dict[str, Any],
    validator: OAS30Validator,
) -> None:
    obj = copy.deepcopy(load_yaml_docs(EXAMPLES_DIR / "llama3-8b-vllm-gpu.yaml")[0])
    mutate(obj["spec"])
    found = problems(obj, crd, schema, validator)
    assert found, "a broken LTRServing passed validation"
    assert expected in " ".join(found), found
