"""Rendered chart workloads are hardened: not privileged, no privilege escalation, non-root, read-only
root filesystem, all capabilities dropped, RuntimeDefault seccomp, no host namespaces or host paths,
pinned images, resource requests, and probes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.chart import Renderer, ci_values_files, pod_specs

VALUE_SETS = [None, *ci_values_files()]
VALUE_IDS = ["default", *[p.stem for p in ci_values_files()]]


def _pods(render: Renderer, values_file: Path | None) -> list[tuple[str, dict[str, Any]]]:
    pods = list(pod_specs(render(None, values_file) if values_file else render()))
    assert pods, "the chart renders no workload"
    return pods


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_IDS)
def test_pods_are_hardened(render: Renderer, values_file: Path | None) -> None:
    for name, pod in _pods(render, values_file):
        psc = pod.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, name
        assert psc.get("runAsUser", 0) > 0, name
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key), f"{name}: {key}"
        assert not [v for v in pod.get("volumes", []) if "hostPath" in v], f"{name}: hostPath volume"
        for c in pod["containers"] + pod.get("initContainers", []):
            where = f"{name}/{c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("privileged") is not True, f"{where}: privileged"
            assert sc.get("allowPrivilegeEscalation") is False, f"{where}: privilege escalation allowed"
            assert sc.get("readOnlyRootFilesystem") is True, f"{where}: writable root filesystem"
            assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{where}: may run as root"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities not dropped"
            assert not sc.get("capabilities", {}).get("add"), f"{where}: adds capabilities"
            assert not any(p.get("hostPort") for p in c.get("ports", [])), f"{where}: hostPort"


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_IDS)
def test_containers_are_pinned_and_bounded(render: Renderer, values_file: Path | None) -> None:
    for name, pod in _pods(render, values_file):
        for c in pod["containers"]:
            where = f"{name}/{c['name']}"
            image = c["image"]
            tagged = ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
            assert "@sha256:" in image or tagged, f"{where}: image {image} is not pinned"
            assert c.get("resources", {}).get("requests"), f"{where}: no resource requests"
            assert c.get("resources", {}).get("limits", {}).get("memory"), f"{where}: no memory limit"
            assert c.get("livenessProbe") and c.get("readinessProbe"), f"{where}: probes missing"


def test_hardening_cannot_be_switched_off_by_values(render: Renderer) -> None:
    # The securityContext is not a value: an attempt to set one is rejected by values.schema.json.
    err = render.error({"securityContext": {"privileged": True}})
    assert "additional properties 'securityContext' not allowed" in err
    err = render.error({"podSecurityContext": {"runAsUser": 0}})
    assert "additional properties 'podSecurityContext' not allowed" in err
