"""The chart on the real control plane: helm install / upgrade / uninstall, and the operator's RBAC as
the API server enforces it (the operator pod runs as the chart's ServiceAccount)."""

from __future__ import annotations

import json

import pytest

from ltr_operator.rbac import OPERATOR_RULES
from tests.support.cluster.cluster import Cluster, wait
from tests.support.cluster.release import CHART, OperatorRelease

pytestmark = pytest.mark.cluster


def test_helm_install_establishes_the_crd_rbac_and_the_operator(operator: OperatorRelease) -> None:
    cluster = operator.cluster
    crd = cluster.api.get(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/ltrservings.ltrserving.dev"
    )
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    assert crd["status"]["acceptedNames"]["shortNames"] == ["ltrs"]
    role = cluster.api.get(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{operator.name}")
    binding = cluster.api.get(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{operator.name}")
    assert role is not None and binding["subjects"][0]["name"] == operator.name
    deployment = cluster.api.get(f"/apis/apps/v1/namespaces/{operator.namespace}/deployments/{operator.name}")
    assert deployment["status"].get("availableReplicas") == 1
    pod = operator.pod()
    assert pod["spec"]["serviceAccountName"] == operator.name
    assert pod["status"]["containerStatuses"][0]["ready"]
    # It talks to the API server as that ServiceAccount (projected token, in-cluster config).
    wait(
        lambda: any(
            e["verb"] == "watch" and e["objectRef"].get("resource") == "ltrservings"
            for e in cluster.audit(operator.user)
        ),
        30,
        "the operator's watch on ltrservings",
    )
    release = json.loads(
        cluster.helm("status", operator.release, "-n", operator.namespace, "-o", "json").stdout
    )
    assert release["info"]["status"] == "deployed"


def test_the_operator_may_do_what_its_code_calls_and_nothing_else(operator: OperatorRelease) -> None:
    cluster = operator.cluster
    kubeconfig = cluster.service_account_kubeconfig(operator.namespace, operator.name)

    def can(verb: str, resource: str, *extra: str) -> bool:
        out = cluster.kubectl("auth", "can-i", verb, resource, *extra, kubeconfig=kubeconfig, check=False)
        return out.stdout.strip() == "yes"

    for rule in OPERATOR_RULES:  # the real RBAC evaluator grants every rule the code relies on
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    qualified = f"{resource}.{group}" if group else resource
                    assert can(verb, qualified, "-n", "default"), (verb, qualified)
    for verb, resource in (
        ("get", "secrets"),
        ("list", "secrets"),
        ("delete", "deployments.apps"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("create", "pods"),
        ("delete", "ltrservings.ltrserving.dev"),
        ("escalate", "roles.rbac.authorization.k8s.io"),
    ):
        assert not can(verb, resource, "-n", "default"), (verb, resource)
    denied = cluster.kubectl("get", "secrets", "-n", "kube-system", kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    assert f'User "{operator.user}" cannot list resource "secrets"' in denied.stderr


def test_helm_upgrade_rolls_the_operator_with_changed_values(operator: OperatorRelease) -> None:
    cluster = operator.cluster
    before = operator.pod()
    cluster.helm(
        "upgrade",
        operator.release,
        str(CHART),
        "-n",
        operator.namespace,
        "--reuse-values",
        "--wait",
        "--timeout",
        "180s",
        "--set",
        "operator.logLevel=verbose",
    )
    try:
        after = wait(
            lambda: [
                p
                for p in cluster.pods(operator.namespace, "app.kubernetes.io/name=ltr-serving")
                if p["metadata"]["uid"] != before["metadata"]["uid"]
            ],
            60,
            "the upgraded pod",
        )
        assert "--verbose" in after[0]["spec"]["containers"][0]["args"]
        operator.pod()  # Ready again, and (Recreate) the old pod is gone
        assert len(cluster.pods(operator.namespace, "app.kubernetes.io/name=ltr-serving")) == 1
        history = json.loads(
            cluster.helm("history", operator.release, "-n", operator.namespace, "-o", "json").stdout
        )
        assert history[-1]["status"] == "deployed" and history[-1]["revision"] >= 2
    finally:
        cluster.helm(
            "upgrade",
            operator.release,
            str(CHART),
            "-n",
            operator.namespace,
            "--reuse-values",
            "--wait",
            "--timeout",
            "180s",
            "--set",
            "operator.logLevel=info",
        )


def test_namespaced_install_runs_and_uninstall_keeps_the_crd(
    cluster: Cluster, operator: OperatorRelease
) -> None:
    """A second, namespace-scoped release (Role per watched namespace), then helm uninstall."""
    release, ns, watched = "scoped", "ltr-scoped", "ltr-scoped-watched"
    cluster.kubectl("create", "namespace", watched)
    cluster.helm(
        "install",
        release,
        str(CHART),
        "-n",
        ns,
        "--create-namespace",
        "--wait",
        "--timeout",
        "180s",
        "--set",
        f"operator.watchNamespaces={{{watched}}}",
    )
    name = f"{release}-ltr-serving"
    user = f"system:serviceaccount:{ns}:{name}"
    assert (
        cluster.api.get(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{watched}/roles/{name}") is not None
    )
    cluster.wait_pods(ns, "app.kubernetes.io/name=ltr-serving", 1)
    wait(
        lambda: any(
            e["verb"] == "watch"
            and e["objectRef"].get("resource") == "ltrservings"
            and e["objectRef"].get("namespace") == watched
            for e in cluster.audit(user)
        ),
        60,
        "the scoped operator's watch in its namespace",
    )
    forbidden = [e for e in cluster.audit(user) if e.get("responseStatus", {}).get("code") == 403]
    assert not forbidden, forbidden[:3]

    cluster.helm("uninstall", release, "-n", ns, "--wait", "--timeout", "120s")
    wait(
        lambda: not cluster.pods(ns, "app.kubernetes.io/name=ltr-serving"), 60, "the scoped operator pod gone"
    )
    for path in (
        f"/apis/apps/v1/namespaces/{ns}/deployments/{name}",
        f"/api/v1/namespaces/{ns}/serviceaccounts/{name}",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{watched}/roles/{name}",
        f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}-discovery",
    ):
        assert cluster.api.get(path) is None, path
    assert cluster.api.get(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/ltrservings.ltrserving.dev"
    )
    cluster.kubectl("delete", "namespace", ns, watched, "--wait=false")
