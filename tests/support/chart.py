"""Helpers for tests/chart: render the chart with helm, walk manifests, make the CRD schema strict."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "ltr-serving"
CRD_FILE = REPO_ROOT / "crds" / "ltrserving.yaml"
EXAMPLES_DIR = REPO_ROOT / "examples"
INVALID_VALUES_DIR = REPO_ROOT / "tests" / "chart" / "invalid-values"
CRD_VERSION = "v1alpha1"
RELEASE = "ltr"
NAMESPACE = "ltr-system"
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its stderr."""


def ci_values_files() -> list[Path]:
    """The chart's non-default test values (charts/ltr-serving/ci/*-values.yaml)."""
    return sorted((CHART_DIR / "ci").glob("*-values.yaml"))


def invalid_values_files() -> list[Path]:
    """Values files helm must reject (tests/chart/invalid-values/*.yaml)."""
    return sorted(INVALID_VALUES_DIR.glob("*.yaml"))


class Renderer:
    """Runs `helm template --include-crds` on the chart, caching by input."""

    def __init__(self, helm: str, workdir: Path) -> None:
        self.helm = helm
        self.workdir = workdir
        self._cache: dict[str, list[dict[str, Any]]] = {}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.helm, *args], capture_output=True, text=True, timeout=60, check=False)

    def _args(self, values: dict[str, Any] | None, files: Iterable[Path]) -> list[str]:
        args = ["template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE, "--include-crds"]
        for f in files:
            args += ["-f", str(f)]
        if values is not None:
            text = json.dumps(values, sort_keys=True)  # JSON is YAML
            path = self.workdir / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
            path.write_text(text)
            args += ["-f", str(path)]
        return args

    def __call__(self, values: dict[str, Any] | None = None, *files: Path) -> list[dict[str, Any]]:
        args = self._args(values, files)
        key = "\0".join(args)
        if key not in self._cache:
            proc = self.run(*args)
            if proc.returncode != 0:
                raise HelmError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
            self._cache[key] = [d for d in yaml.safe_load_all(proc.stdout) if d]
        return copy.deepcopy(self._cache[key])

    def error(self, values: dict[str, Any] | None = None, *files: Path) -> str:
        """stderr of a render that must fail; raises AssertionError if it succeeds."""
        proc = self.run(*self._args(values, files))
        if proc.returncode == 0:
            raise AssertionError("helm template accepted values it should reject")
        return proc.stderr


def by_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m.get("kind") == kind]


def pod_specs(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload in the manifests (CronJobs included)."""
    for m in manifests:
        name = f"{m['kind']}/{m['metadata']['name']}"
        if m["kind"] in POD_KINDS:
            yield name, m["spec"]["template"]["spec"]
        elif m["kind"] == "CronJob":
            yield name, m["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif m["kind"] == "Pod":
            yield name, m["spec"]


def rule_triples(rules: Iterable[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Expand RBAC PolicyRules into (apiGroup, resource, verb) triples."""
    out: set[tuple[str, str, str]] = set()
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    out.add((group, resource, verb))
    return out


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def crd_version_schema(crd: dict[str, Any], version: str = CRD_VERSION) -> dict[str, Any]:
    """The openAPIV3Schema of one served version of a CRD."""
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(f"CRD {crd['metadata']['name']} has no version {version}")


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Copy of a structural schema where unknown fields are errors (the API server would prune them).

    Objects with `properties` and no `additionalProperties` / `x-kubernetes-preserve-unknown-fields`
    get `additionalProperties: false`; `metadata` (validated by the API server itself) is left open.
    """

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) for k, v in node.items()}
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out

    return walk(schema)


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting like the API server: fill missing properties from `default`, recursively."""
    if isinstance(value, dict):
        out = dict(value)
        props = schema.get("properties", {})
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
        for key, item in out.items():
            sub = props.get(key)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None:
                out[key] = apply_defaults(sub, item)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def cel_violations(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Evaluate every x-kubernetes-validations rule (with cel-python) where the value has that node.

    Returns 'path: message' for each rule that is false or fails to evaluate."""
    import celpy  # cel-python: only these checks need it
    from celpy import celtypes

    problems: list[str] = []
    env = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations", []):
        try:
            program = env.program(env.compile(rule["rule"]))
            result = program.evaluate({"self": celpy.json_to_cel(value)})
        except Exception as exc:  # a CEL error is a rejection at the API server too
            problems.append(f"{path or '.'}: rule {rule['rule']!r} failed to evaluate: {exc}")
            continue
        if not isinstance(result, celtypes.BoolType):  # cel-python returns evaluation errors as values
            problems.append(f"{path or '.'}: rule {rule['rule']!r} did not evaluate to a bool: {result}")
        elif not bool(result):
            problems.append(f"{path or '.'}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                problems += cel_violations(sub, item, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += cel_violations(schema["items"], item, f"{path}[{i}]")
    return problems
