"""RBAC least privilege: the chart grants exactly what ltr_operator.rbac says the operator's code calls
(plus kopf's own discovery), never a wildcard, in cluster-wide and namespace-scoped mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ltr_operator import rbac
from tests.support.chart import NAMESPACE, Renderer, by_kind, ci_values_files, rule_triples

RBAC_KINDS = ("ClusterRole", "Role")
CRD_DISCOVERY = [r for r in rbac.KOPF_RULES if "customresourcedefinitions" in r["resources"]]
NAMESPACE_DISCOVERY = [r for r in rbac.KOPF_RULES if "namespaces" in r["resources"]]
WATCHED = ["team-a", "team-b"]


def roles(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] in RBAC_KINDS]


def test_kopf_rules_are_the_two_discovery_rules() -> None:
    # If the operator adds a framework rule, the chart's split below must learn where it belongs.
    assert rule_triples(rbac.KOPF_RULES) == rule_triples(CRD_DISCOVERY + NAMESPACE_DISCOVERY)
    assert CRD_DISCOVERY and NAMESPACE_DISCOVERY


@pytest.mark.parametrize(
    "values", [None, {"operator": {"watchNamespaces": WATCHED}}], ids=["cluster-wide", "namespaced"]
)
def test_no_wildcards_and_no_peering(render: Renderer, values: dict[str, Any] | None) -> None:
    found = roles(render(values))
    assert found
    for role in found:
        for rule in role["rules"]:
            where = f"{role['kind']}/{role['metadata']['name']}"
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(key, []), f"{where}: wildcard {key}"
            assert "nonResourceURLs" not in rule
        assert not rule_triples(role["rules"]) & rule_triples(rbac.PEERING_RULES), "runs --standalone"


def test_cluster_wide_grants_exactly_operator_rules(render: Renderer) -> None:
    manifests = render()
    (role,) = roles(manifests)
    assert role["kind"] == "ClusterRole"
    # kopf lists namespaces only when it watches named namespaces, so cluster-wide needs no namespace rule.
    assert rule_triples(role["rules"]) == rule_triples(rbac.OPERATOR_RULES + CRD_DISCOVERY)
    (binding,) = by_kind(manifests, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    (sa,) = by_kind(manifests, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    ]
    (deployment,) = by_kind(manifests, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def test_namespaced_mode_grants_operator_rules_only_in_watched_namespaces(render: Renderer) -> None:
    manifests = render({"operator": {"watchNamespaces": WATCHED}})
    namespaced = by_kind(manifests, "Role")
    assert sorted(r["metadata"]["namespace"] for r in namespaced) == WATCHED
    for role in namespaced:
        assert rule_triples(role["rules"]) == rule_triples(rbac.OPERATOR_RULES)
    (cluster_role,) = by_kind(manifests, "ClusterRole")
    assert rule_triples(cluster_role["rules"]) == rule_triples(rbac.KOPF_RULES)
    bindings = by_kind(manifests, "RoleBinding")
    assert sorted((b["metadata"]["namespace"], b["roleRef"]["name"]) for b in bindings) == sorted(
        (r["metadata"]["namespace"], r["metadata"]["name"]) for r in namespaced
    )
    (cluster_binding,) = by_kind(manifests, "ClusterRoleBinding")
    assert cluster_binding["roleRef"]["name"] == cluster_role["metadata"]["name"]


def test_retrain_job_role_is_within_operator_rules() -> None:
    # RBAC lets the operator create the retrain Role only if it holds those permissions itself.
    assert rule_triples(rbac.RETRAIN_JOB_RULES) <= rule_triples(rbac.OPERATOR_RULES)


@pytest.mark.parametrize("values_file", ci_values_files(), ids=lambda p: p.stem)
def test_ci_values_rbac_matches_mode(render: Renderer, values_file: Path) -> None:
    manifests = render(None, values_file)
    granted = set().union(*(rule_triples(r["rules"]) for r in roles(manifests)))
    namespaced = yaml.safe_load(values_file.read_text()).get("operator", {}).get("watchNamespaces")
    expected = rbac.OPERATOR_RULES + (rbac.KOPF_RULES if namespaced else CRD_DISCOVERY)
    assert granted == rule_triples(expected)
