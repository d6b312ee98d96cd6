"""A small async Kubernetes REST client (aiohttp) and credential loading shared with kopf's login.

Only what the operator needs: get/list/create/server-side apply/merge-patch/delete of the kinds in
KINDS, by path.
Credentials: in-cluster service account, or a kubeconfig (token, client certificate, CA; exec
plugins are not supported - run in-cluster or use a token).
"""

from __future__ import annotations

import base64
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

USER_AGENT = "ltr-operator"
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
    "LTRServing": ("ltrserving.dev/v1alpha1", "ltrservings", True),
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


NAMESPACE_TERMINATING = "NamespaceTerminating"
FIELD_MANAGER = "ltr-operator"


@dataclass(frozen=True)
class Credentials:
    server: str
    token: str | None = None
    ca_data: str | None = None  # PEM
    cert_data: str | None = None  # PEM client certificate
    key_data: str | None = None  # PEM client key
    insecure: bool = False


def _pem(entry: dict[str, Any], key: str, base: Path) -> str | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"]).decode()
    if entry.get(key):
        return (base / Path(entry[key]).expanduser()).read_text()
    return None


def load_credentials(kubeconfig: str | None = None) -> Credentials:
    """In-cluster service account when running in a pod and no kubeconfig is given, else a kubeconfig."""
    if kubeconfig is None and (SA_DIR / "token").exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        host = f"[{host}]" if ":" in host else host
        return Credentials(
            server=f"https://{host}:{port}",
            token=(SA_DIR / "token").read_text().strip(),
            ca_data=(SA_DIR / "ca.crt").read_text(),
        )
    path = Path(kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config")
    path = path.expanduser()
    try:
        config = yaml.safe_load(path.read_text()) or {}
        contexts = {c["name"]: c["context"] for c in config.get("contexts", [])}
        context = contexts[config["current-context"]]
        cluster = {c["name"]: c["cluster"] for c in config.get("clusters", [])}[context["cluster"]]
        user = {u["name"]: u["user"] for u in config.get("users", [])}.get(context.get("user"), {}) or {}
        token = user.get("token") or (
            Path(user["tokenFile"]).read_text().strip() if user.get("tokenFile") else None
        )
        return Credentials(
            server=cluster["server"].rstrip("/"),
            token=token,
            ca_data=_pem(cluster, "certificate-authority", path.parent),
            cert_data=_pem(user, "client-certificate", path.parent),
            key_data=_pem(user, "client-key", path.parent),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
        )
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot use kubeconfig {path}: {exc!r}") from exc


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
    """Async JSON client; open it inside the event loop that uses it."""

    def __init__(self, credentials: Credentials, timeout_s: float = 15.0) -> None:
        self.credentials = credentials
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _ssl(self) -> ssl.SSLContext | bool:
        creds = self.credentials
        if not creds.server.startswith("https"):
            return False
        ctx = ssl.create_default_context(cadata=creds.ca_data or None)
        if creds.insecure:
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        if creds.cert_data and creds.key_data:
            import tempfile  # load_cert_chain needs files; they live only for this call

            with tempfile.TemporaryDirectory() as tmp:
                cert, key = Path(tmp, "c.pem"), Path(tmp, "k.pem")
                cert.write_text(creds.cert_data)
                key.write_text(creds.key_data)
                key.chmod(0o600)
                ctx.load_cert_chain(cert, key)
        return ctx

    async def __aenter__(self) -> KubeClient:
        headers = {"User-Agent": USER_AGENT}
        if self.credentials.token:
            headers["Authorization"] = f"Bearer {self.credentials.token}"
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=self.timeout, connector=aiohttp.TCPConnector(ssl=self._ssl())
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> Any:
        if self._session is None:
            raise RuntimeError("KubeClient is not open (use `async with`)")
        async with self._session.request(
            method,
            self.credentials.server + path,
            json=body,
            params=params,
            headers={"Content-Type": content_type},
        ) as resp:
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                data = {"message": (await resp.text())[:500]}
            if resp.status >= 400:
                data = data if isinstance(data, dict) else {}
                causes = (data.get("details") or {}).get("causes") or []
                raise ApiError(
                    resp.status,
                    str(data.get("reason", resp.reason)),
                    str(data.get("message", "")),
                    tuple(str(c.get("type", "")) for c in causes if isinstance(c, dict)),
                )
            return data

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path_for(kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, kind: str, namespace: str, label_selector: dict[str, str]) -> list[dict[str, Any]]:
        """Objects whose labels include `label_selector` (filtered here too: not every server filters)."""
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
        self, kind: str, namespace: str, name: str, patch: dict[str, Any], subresource: str | None = None
    ) -> dict[str, Any]:
        return await self.request(
            "PATCH", path_for(kind, namespace, name, subresource), patch, "application/merge-patch+json"
        )

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            await self.request(
                "DELETE",
                path_for(kind, namespace, name),
                {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
        except ApiError as exc:
            if exc.status != 404:
                raise


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
