"""The chart lints strictly, renders with default and non-default values into manifests that
kubernetes-validate --strict accepts, and helm rejects values that break values.schema.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support.chart import (
    CHART_DIR,
    NAMESPACE,
    RELEASE,
    Renderer,
    by_kind,
    ci_values_files,
    invalid_values_files,
    pod_specs,
)

K8S_VERSION = "1.37.0"
# Prometheus Operator's ServiceMonitor is itself a CRD kind, so kubernetes-validate has no schema for
# it; this is the subset of monitoring.coreos.com/v1 the chart renders, with unknown fields refused.
_DURATION: dict[str, Any] = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"}
_STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_ENDPOINT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["port"],
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string", "pattern": "^/"},
        "scheme": {"enum": ["http", "https"]},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
    },
}
_NAMESPACE_SELECTOR: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "any": {"type": "boolean"},
        "matchNames": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    },
    "oneOf": [{"required": ["any"]}, {"required": ["matchNames"]}],
}
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
                "namespace": {"type": "string"},
                "labels": _STRING_MAP,
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["matchLabels"],
                    "properties": {"matchLabels": {**_STRING_MAP, "minProperties": 1}},
                },
                "namespaceSelector": _NAMESPACE_SELECTOR,
                "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT},
            },
        },
    },
}

VALUE_SETS = [None, *ci_values_files()]
VALUE_IDS = ["default", *[p.stem for p in ci_values_files()]]


def _render(render: Renderer, values_file: Path | None) -> list[dict[str, Any]]:
    return render(None, values_file) if values_file else render()


def test_ci_values_files_exist() -> None:
    assert len(ci_values_files()) >= 2, "non-default values for the checks live in charts/ltr-serving/ci/"


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_IDS)
def test_helm_lint_strict(render: Renderer, values_file: Path | None) -> None:
    args = ["lint", "--strict", str(CHART_DIR), "--namespace", NAMESPACE]
    proc = render.run(*args, *(["-f", str(values_file)] if values_file else []))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_IDS)
def test_rendered_manifests_validate_strictly(render: Renderer, values_file: Path | None) -> None:
    manifests = _render(render, values_file)
    kinds = {m["kind"] for m in manifests}
    assert {"CustomResourceDefinition", "Deployment"} <= kinds, kinds
    for m in manifests:
        name = f"{m['kind']}/{m['metadata']['name']}"
        if m["kind"] == "ServiceMonitor":
            jsonschema.validate(m, SERVICE_MONITOR_SCHEMA)
            continue
        try:
            kubernetes_validate.validate(m, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {'.'.join(map(str, exc.path))}: {exc.message}")
        if m["kind"] != "CustomResourceDefinition" and not m["kind"].startswith("Cluster"):
            assert m["metadata"].get("namespace"), f"{name} has no namespace"


def test_strict_validation_catches_unknown_fields(render: Renderer) -> None:
    (deployment,) = by_kind(render(), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    (monitor,) = by_kind(render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["intervall"] = "5s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)


@pytest.mark.parametrize("values_file", invalid_values_files(), ids=lambda p: p.stem)
def test_invalid_values_are_rejected(render: Renderer, values_file: Path) -> None:
    first = values_file.read_text().splitlines()[0]
    assert first.startswith("# error: "), f"{values_file.name}: first line must be '# error: <expected text>'"
    stderr = render.error(None, values_file)
    assert first.removeprefix("# error: ") in stderr, stderr


def test_defaults(render: Renderer) -> None:
    manifests = render()
    (deployment,) = by_kind(manifests, "Deployment")
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/ltr-serving/ltr-operator:0.1.0"  # appVersion
    args = container["args"]
    assert "--standalone" in args and "--all-namespaces" in args
    assert "--sidecar-image=ghcr.io/ltr-serving/ltr-sidecar:0.1.0" in args
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert not by_kind(manifests, "ServiceMonitor")
    (crd,) = by_kind(manifests, "CustomResourceDefinition")
    assert crd["metadata"]["name"] == "ltrservings.ltrserving.dev"
    assert RELEASE in deployment["metadata"]["name"]


def test_namespaced_values(render: Renderer) -> None:
    manifests = render(
        {"operator": {"watchNamespaces": ["team-a", "team-b"]}, "serviceMonitor": {"enabled": True}}
    )
    (container,) = by_kind(manifests, "Deployment")[0]["spec"]["template"]["spec"]["containers"]
    assert "--namespace=team-a" in container["args"] and "--namespace=team-b" in container["args"]
    assert "--all-namespaces" not in container["args"]
    (monitor,) = by_kind(manifests, "ServiceMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


def test_digest_and_existing_service_account(render: Renderer) -> None:
    digest = "sha256:" + "ab" * 32
    manifests = render({"image": {"digest": digest}, "serviceAccount": {"create": False, "name": "ops"}})
    (deployment,) = by_kind(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"ghcr.io/ltr-serving/ltr-operator@{digest}"
    assert pod["serviceAccountName"] == "ops" and not by_kind(manifests, "ServiceAccount")
    subjects = [
        s
        for b in by_kind(manifests, "ClusterRoleBinding") + by_kind(manifests, "RoleBinding")
        for s in b["subjects"]
    ]
    assert subjects and all(s["name"] == "ops" and s["namespace"] == NAMESPACE for s in subjects)


def test_rbac_disabled_renders_no_rbac(render: Renderer) -> None:
    kinds = {m["kind"] for m in render({"rbac": {"create": False}})}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def test_workloads_found(render: Renderer) -> None:
    assert [n for n, _ in pod_specs(render())] == [f"Deployment/{RELEASE}-ltr-serving"]


def _value_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of values.yaml, two levels deep (free-form maps and resources stay one key)."""
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and not prefix and key not in ("resources",):
            paths += _value_paths(value, f"{path}.")
        else:
            paths.append(path)
    return paths


def test_every_value_is_documented(repo_root: Path) -> None:
    text = (CHART_DIR / "values.yaml").read_text()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#")):
            assert i > 0 and lines[i - 1].lstrip().startswith("#"), f"values.yaml: {line!r} has no comment"
    doc = (repo_root / "docs" / "helm.md").read_text()
    missing = [p for p in _value_paths(yaml.safe_load(text)) if f"`{p}" not in doc]
    assert not missing, f"docs/helm.md does not document: {missing}"


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_IDS)
def test_notes_render(
    render: Renderer, values_file: Path | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))  # --dry-run=client needs no cluster
    args = ["install", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE, "--dry-run=client"]
    proc = render.run(*args, *(["-f", str(values_file)] if values_file else []))
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "kubectl get ltrs" in notes and "rollout status deployment/" in notes
    watched = (
        (yaml.safe_load(values_file.read_text()) if values_file else {})
        .get("operator", {})
        .get("watchNamespaces", [])
    )
    assert (", ".join(watched) if watched else "all namespaces") in notes
