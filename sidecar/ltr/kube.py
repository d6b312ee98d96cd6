"""The project's one Kubernetes client (operator and retrain job), on kubernetes_asyncio.

kubernetes_asyncio does credentials and transport: in-cluster service account (token re-read as it
rotates), kubeconfig with client certificates, tokens and **exec plugins** (EKS/GKE/AKS), TLS. This
module adds the small dict-in/dict-out surface both callers need: get, list, server-side apply,
create, merge patch, delete of the kinds in KINDS, and one error type. Chosen by measurement against
kr8s and lightkube: benchmarks/kube_clients.py → benchmarks/results/kube-clients.md.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from ltr.contract import GROUP, PLURAL, VERSION

USER_AGENT = "ltr-serving"
FIELD_MANAGER = "ltr-operator"
NAMESPACE_TERMINATING = "NamespaceTerminating"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# kind -> (apiVersion, plural, namespaced)
KINDS: dict[str, tuple[str, str, bool]] = {
    "ConfigMap": ("v1", "configmaps", True),
    "Secret": ("v1", "secrets", True),
    "NetworkPolicy": ("networking.k8s.io/v1", "networkpolicies", True),
    "Service": ("v1", "services", True),
    "PersistentVolumeClaim": ("v1", "persistentvolumeclaims", True),
    "ServiceAccount": ("v1", "serviceaccounts", True),
    "Pod": ("v1", "pods", True),
    "Event": ("v1", "events", True),
    "Deployment": ("apps/v1", "deployments", True),
    "CronJob": ("batch/v1", "cronjobs", True),
    "Role": ("rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings", True),
    "LTRServing": (f"{GROUP}/{VERSION}", PLURAL, True),
    "Namespace": ("v1", "namespaces", False),
}


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, reason: str, message: str, causes: tuple[str, ...] = ()) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message
        self.causes = causes  # Status.details.causes[].type, e.g. NamespaceTerminating

    @property
    def namespace_terminating(self) -> bool:
        """A create refused because the namespace is being deleted (403 from NamespaceLifecycle)."""
        return self.status == 403 and (
            NAMESPACE_TERMINATING in self.causes or "because it is being terminated" in self.message
        )

    @classmethod
    def of(cls, exc: ApiException) -> ApiError:
        """Our error from the library's (the API server's Status object when it sent one)."""
        try:
            data = json.loads(exc.body or "{}")
        except (TypeError, ValueError):
            data = {"message": str(exc.body)[:500]}
        data = data if isinstance(data, dict) else {}
        causes = (data.get("details") or {}).get("causes") or []
        return cls(
            int(exc.status or 0),
            str(data.get("reason") or exc.reason or ""),
            str(data.get("message", "")),
            tuple(str(c.get("type", "")) for c in causes if isinstance(c, dict)),
        )


@dataclass(frozen=True)
class Connection:
    """Where and how to connect, as files (what kopf's login wants); after any exec plugin ran."""

    server: str
    token: str | None
    ca_path: str | None
    cert_path: str | None
    key_path: str | None
    insecure: bool


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SA_DIR / "token").exists()


async def load_configuration(kubeconfig: str | None = None) -> k8s_client.Configuration:
    """In-cluster service account when in a pod and no kubeconfig is given, else the kubeconfig
    (`kubeconfig`, $KUBECONFIG or ~/.kube/config; exec plugins included). ValueError when unusable."""
    cfg = k8s_client.Configuration()
    try:
        if kubeconfig is None and in_cluster():
            k8s_config.load_incluster_config(client_configuration=cfg)
        else:
            await k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    except (k8s_config.ConfigException, OSError, KeyError, TypeError, ValueError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ValueError(f"cannot use kubeconfig {where}: {exc}") from exc
    return cfg


async def connection(cfg: k8s_client.Configuration) -> Connection:
    """The credentials `cfg` holds now (a refreshed token when it has a refresh hook)."""
    bearer = await cfg.get_api_key_with_prefix("BearerToken") or await cfg.get_api_key_with_prefix(
        "authorization"
    )
    token = bearer.split(" ", 1)[1] if bearer and " " in bearer else bearer
    return Connection(
        server=str(cfg.host).rstrip("/"),
        token=token or None,
        ca_path=cfg.ssl_ca_cert,
        cert_path=cfg.cert_file,
        key_path=cfg.key_file,
        insecure=not cfg.verify_ssl,
    )


def path_for(
    kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None
) -> str:
    """REST path of a collection or object of `kind`."""
    api_version, plural, namespaced = KINDS[kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    parts = [base] + ([f"namespaces/{namespace}"] if namespaced and namespace else []) + [plural]
    parts += [name] if name else []
    parts += [subresource] if subresource else []
    return "/".join(parts)


class KubeClient:
    """Async JSON client over kubernetes_asyncio's ApiClient; open it in the event loop that uses it."""

    def __init__(
        self, configuration: k8s_client.Configuration, user_agent: str = USER_AGENT, timeout_s: float = 15.0
    ) -> None:
        self.configuration, self.user_agent, self.timeout_s = configuration, user_agent, timeout_s
        self._api: k8s_client.ApiClient | None = None

    async def __aenter__(self) -> KubeClient:
        self._api = k8s_client.ApiClient(self.configuration)
        self._api.user_agent = self.user_agent
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> Any:
        if self._api is None:
            raise RuntimeError("KubeClient is not open (use `async with`)")
        try:
            return await self._api.call_api(
                path,
                method,
                query_params=list((params or {}).items()),
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=self.timeout_s,
            )
        except ApiException as exc:
            raise ApiError.of(exc) from exc

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path_for(kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, kind: str, namespace: str, label_selector: dict[str, str]) -> list[dict[str, Any]]:
        """Objects whose labels include `label_selector` (filtered here too: kmock does not filter)."""
        sel = ",".join(f"{k}={v}" for k, v in label_selector.items())
        data = await self.request("GET", path_for(kind, namespace), params={"labelSelector": sel})
        items = data.get("items", []) if isinstance(data, dict) else []
        return [
            i for i in items if label_selector.items() <= (i.get("metadata", {}).get("labels") or {}).items()
        ]

    async def apply(self, obj: dict[str, Any], field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply: `obj` is this manager's whole intent; fields it no longer sets are removed
        (unless another manager owns them). force=true takes fields back from hand edits (drift repair)."""
        meta = obj["metadata"]
        return await self.request(
            "PATCH",
            path_for(obj["kind"], meta.get("namespace"), meta["name"]),
            obj,  # JSON is YAML
            "application/apply-patch+yaml",
            params={"fieldManager": field_manager, "force": "true"},
        )

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path_for(obj["kind"], obj["metadata"].get("namespace")), obj)

    async def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
        field_manager: str = FIELD_MANAGER,
    ) -> dict[str, Any]:
        """JSON merge patch (RFC 7386)."""
        return await self.request(
            "PATCH",
            path_for(kind, namespace, name, subresource),
            patch,
            "application/merge-patch+json",
            params={"fieldManager": field_manager},
        )

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete with background propagation; absent is fine."""
        try:
            await self.request(
                "DELETE",
                path_for(kind, namespace, name),
                {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
        except ApiError as exc:
            if exc.status != 404:
                raise
