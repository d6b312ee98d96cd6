"""Pure parts of the test node agent (no cluster): kubelet's env, quantity, phase and volume rules."""

from __future__ import annotations

import base64
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support.cluster import podspec, tools
from tests.support.cluster.nodeagent import PROJECT_IMAGES
from tests.support.cluster.volumes import write_atomic

POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"b": "2", "a": "1"}},
    "spec": {
        "nodeName": "cpu-0",
        "serviceAccountName": "sa",
        "containers": [{"name": "c", "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}}}],
    },
    "status": {"podIP": "10.244.0.9", "hostIP": "169.254.1.1"},
}


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "x", "B": "y"}
    assert podspec.expand("$(A)-$(B)", env) == "x-y"
    assert podspec.expand("$(MISSING)", env) == "$(MISSING)"
    assert podspec.expand("$$(A) $ $(A", env) == "$(A) $ $(A"


def test_quantities_and_resource_refs() -> None:
    assert podspec.quantity("500m") == Decimal("0.5")
    assert podspec.quantity("1Gi") == 2**30 and podspec.quantity("1e3") == 1000
    ref = {"resource": "limits.cpu"}
    assert podspec.resource_ref(POD, ref, "c", {}) == "2"  # ceil(1.5)
    assert podspec.resource_ref(POD, {"resource": "limits.memory", "divisor": "1Mi"}, "c", {}) == "1024"
    assert (
        podspec.resource_ref(POD, {"resource": "requests.cpu"}, "c", {}) == "2"
    )  # requests default to limits
    with pytest.raises(podspec.SpecError):
        podspec.quantity("12zz")


def test_container_env_resolution_order_and_references() -> None:
    container = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "URL", "value": "http://$(IP):80/$(KUBERNETES_SERVICE_HOST)"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope", "optional": True}}},
            {"name": "LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['a']"}}},
        ],
    }
    objects = {
        ("ConfigMap", "cm"): {"data": {"k": "v", "bad key": "x"}},
        ("Secret", "s"): {"data": {"t": base64.b64encode(b"secret").decode()}},
    }
    env = podspec.container_env(POD, container, objects, podspec.service_env("10.96.0.1"), {})
    assert env["CM_k"] == "v" and "CM_bad key" not in env
    assert env["POD"] == "p" and env["URL"] == "http://10.244.0.9:80/10.96.0.1"
    assert env["TOKEN"] == "secret" and "OPT" not in env and env["LABEL"] == "1"
    assert env["KUBERNETES_PORT_443_TCP_ADDR"] == "10.96.0.1"
    with pytest.raises(podspec.SpecError, match="couldn't find key"):
        podspec.container_env(
            POD,
            {
                "name": "c",
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "missing"}}}],
            },
            objects,
            {},
            {},
        )


def test_field_refs_render_like_the_downward_api() -> None:
    assert podspec.field_ref(POD, {"fieldPath": "metadata.labels"}) == 'a="1"\nb="2"'
    assert podspec.field_ref(POD, {"fieldPath": "spec.serviceAccountName"}) == "sa"
    with pytest.raises(podspec.SpecError):
        podspec.field_ref(POD, {"fieldPath": "spec.nope"})


@pytest.mark.parametrize(
    ("states", "policy", "phase"),
    [
        ([{"state": {"running": {}}}], "Always", "Running"),
        ([{"state": {"waiting": {}}}], "Always", "Pending"),
        ([{"state": {"running": {}}}, {"state": {"waiting": {}}}], "Always", "Pending"),
        ([{"state": {"waiting": {}}, "lastState": {"terminated": {"exitCode": 1}}}], "Always", "Running"),
        ([{"state": {"terminated": {"exitCode": 0}}}], "Never", "Succeeded"),
        ([{"state": {"terminated": {"exitCode": 2}}}], "Never", "Failed"),
        ([{"state": {"terminated": {"exitCode": 2}}}], "OnFailure", "Running"),
    ],
)
def test_pod_phase_matches_kubelet(states: list, policy: str, phase: str) -> None:
    assert podspec.pod_phase(states, policy, init_done=True) == phase


def test_atomic_writer_swaps_data_and_prunes_keys(tmp_path: Path) -> None:
    assert write_atomic(tmp_path, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    first = os.readlink(tmp_path / "..data")
    assert (tmp_path / "a").read_text() == "1" and (tmp_path / "dir" / "b").read_text() == "2"
    assert not write_atomic(tmp_path, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})  # unchanged
    assert write_atomic(tmp_path, {"a": (b"3", 0o644)})
    assert os.readlink(tmp_path / "..data") != first and not (tmp_path / first).exists()
    assert (tmp_path / "a").read_text() == "3" and not (tmp_path / "dir").exists()
    assert (tmp_path / "a").is_symlink() and os.readlink(tmp_path / "a") == "..data/a"


def test_build_stamps_the_pinned_kubernetes_version() -> None:
    version = tools.kubernetes_version()
    assert version.startswith("v1.37.")
    assert f"k8s.io/component-base/version.gitVersion={version}" in tools.version_ldflags()


def _dockerfile_exec_form(path: Path, instruction: str) -> list[str]:
    for line in path.read_text().splitlines():
        if line.startswith(instruction + " "):
            return json.loads(line[len(instruction) + 1 :])
    return []


def test_project_images_match_the_dockerfiles() -> None:
    """The agent runs the project's images from the checkout with their Dockerfile ENTRYPOINT/CMD."""
    for image, dockerfile in (("ltr-operator", "operator/Dockerfile"), ("ltr-sidecar", "sidecar/Dockerfile")):
        path = tools.REPO_ROOT / dockerfile
        expected = (_dockerfile_exec_form(path, "ENTRYPOINT"), _dockerfile_exec_form(path, "CMD"))
        assert PROJECT_IMAGES[image] == expected, dockerfile


def test_image_paths_keep_the_outermost_host_directories() -> None:
    from tests.support.cluster.nodeagent import image_paths

    # the checkout holds the venv: one bind (podexec re-binds it where a volume, e.g. /tmp, hides it)
    assert image_paths(["/usr/local", "/usr/local/lib", "/srv/co/.venv", "/srv/co", ""]) == [
        "/srv/co",
        "/usr/local",
    ]
    assert image_paths(["/srv/co2", "/srv/co"]) == ["/srv/co", "/srv/co2"]  # siblings, not nested
