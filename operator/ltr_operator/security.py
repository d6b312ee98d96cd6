"""Pure builders of what keeps an LTRServing's pods apart: the admin-plane Secret, the NetworkPolicy,
and the containers' security contexts (dict in, dict out; no I/O).

Planes (DESIGN §8): clients reach the data ports (gRPC, HTTP, metrics); only the operator's pods reach
the admin port, which also requires the bearer token in the Secret; nothing reaches the engine, which
listens on loopback inside the pod.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ltr_operator.spec import LTRServingSpec

ADMIN_DIR = "/etc/ltr-admin"  # not under the ConfigMap mount (/etc/ltr): nested mounts there fail
ADMIN_TOKEN_KEY = "token"
SIDECAR_USER = 65532

#: The engine container's default: no capabilities, no privilege escalation, the runtime's seccomp
#: profile. Not runAsNonRoot: most engine images (vLLM's among them) run as root; set it in
#: spec.model.securityContext where the image allows.
ENGINE_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
SIDECAR_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": SIDECAR_USER,
    "runAsGroup": SIDECAR_USER,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass(frozen=True)
class OperatorPeer:
    """How the NetworkPolicy recognises the operator's pods (set from the operator's own pod)."""

    namespace: str = ""  # "" = the operator is not a pod here: no peer can be named
    pod_labels: Mapping[str, str] = field(default_factory=dict)


def engine_security_context(spec: LTRServingSpec) -> dict[str, Any]:
    """spec.model.securityContext when set (it replaces the default), else the hardened default."""
    if spec.model.security_context is not None:
        return dict(spec.model.security_context)
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in ENGINE_SECURITY_CONTEXT.items()}


def admin_secret(meta: dict[str, Any], token: str) -> dict[str, Any]:
    """The Secret whose `token` the sidecars require on the admin plane (`meta`: the child's metadata)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": {ADMIN_TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def _port(port: int) -> dict[str, Any]:
    return {"protocol": "TCP", "port": port}


def network_policy(
    meta: dict[str, Any], pod_selector: Mapping[str, str], spec: LTRServingSpec, operator: OperatorPeer
) -> dict[str, Any]:
    """Ingress to the pods: data ports from `spec.networkPolicy.clients` (any source when empty), the
    admin port from the operator's pods only; everything else (the engine port) denied."""
    sd = spec.sidecar
    data: dict[str, Any] = {"ports": [_port(sd.grpc_port), _port(sd.http_port), _port(sd.metrics_port)]}
    if spec.network_policy.clients:
        data["from"] = [dict(peer) for peer in spec.network_policy.clients]
    rules = [data]
    if operator.namespace:
        peer = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": operator.namespace}},
            "podSelector": {"matchLabels": dict(operator.pod_labels)},
        }
        rules.append({"ports": [_port(sd.admin_port)], "from": [peer]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta,
        "spec": {
            "podSelector": {"matchLabels": dict(pod_selector)},
            "policyTypes": ["Ingress"],
            "ingress": rules,
        },
    }
