"""The operator's Kubernetes access: the project's one client (`ltr.kube`, on kubernetes_asyncio:
in-cluster, kubeconfig, exec plugins) and the Events the operator posts."""

from __future__ import annotations

import os
from typing import Any

from ltr.kube import (
    FIELD_MANAGER,
    KINDS,
    NAMESPACE_TERMINATING,
    ApiError,
    Connection,
    KubeClient,
    connection,
    load_configuration,
    path_for,
)

__all__ = [
    "FIELD_MANAGER",
    "KINDS",
    "NAMESPACE_TERMINATING",
    "ApiError",
    "Connection",
    "KubeClient",
    "connection",
    "event_for",
    "load_configuration",
    "path_for",
]
USER_AGENT = "ltr-operator"


def event_for(body: dict[str, Any], etype: str, reason: str, message: str, now: str) -> dict[str, Any]:
    """A core/v1 Event about `body` (what `kubectl describe` lists)."""
    meta = body["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": body.get("apiVersion", ""),
            "kind": body.get("kind", ""),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
        },
        "type": etype,
        "reason": reason,
        "message": message[:1024],
        "action": reason,
        "source": {"component": USER_AGENT},
        "reportingComponent": USER_AGENT,
        "reportingInstance": os.environ.get("POD_NAME", USER_AGENT),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
