"""The chart as installed by the cluster tier's `operator` fixture (helm release + its operator pod)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.support.cluster import tools
from tests.support.cluster.cluster import Cluster

CHART = tools.REPO_ROOT / "charts" / "ltr-serving"
RELEASE, OPERATOR_NAMESPACE = "ltr", "ltr-system"


@dataclass
class OperatorRelease:
    """The chart installed by helm; its operator pod runs in the cluster with the chart's ServiceAccount."""

    cluster: Cluster
    release: str = RELEASE
    namespace: str = OPERATOR_NAMESPACE

    @property
    def name(self) -> str:  # the chart's fullname: Deployment, ServiceAccount, ClusterRole
        return f"{self.release}-ltr-serving"

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    def pod(self) -> dict[str, Any]:
        pods = self.cluster.wait_pods(self.namespace, "app.kubernetes.io/name=ltr-serving", 1)
        return pods[0]

    def log(self) -> str:
        return self.cluster.pod_log(self.namespace, self.pod()["metadata"]["name"], "operator")

    def forbidden(self) -> list[dict[str, Any]]:
        """Every request of the operator (its ServiceAccount, not kubectl) answered 403 (audit log).

        One 403 per namespace for a create racing the namespace's deletion is not counted: the operator
        reads the namespace before recreating a child, but the namespace controller may delete the child
        between that read and the apply. A second one in the same namespace is counted (a repair loop)."""
        events = [
            e
            for e in self.cluster.audit(self.user)
            if e.get("responseStatus", {}).get("code") == 403
            and not e.get("userAgent", "").startswith("kubectl")
        ]  # kubectl: tests probing with its token
        raced: set[str] = set()
        counted = []
        for e in events:
            namespace = e["objectRef"].get("namespace", "")
            if (
                "because it is being terminated" in e["responseStatus"].get("message", "")
                and namespace not in raced
            ):
                raced.add(namespace)
                continue
            counted.append(e)
        return counted
