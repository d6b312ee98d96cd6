"""ltr.kube, the project's one Kubernetes client: kubeconfig forms (token, CA, exec plugin), paths, errors.
Requests against a real API server are the cluster tier's (tests/cluster)."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio.client.exceptions import ApiException

from ltr.kube import ApiError, connection, load_configuration, path_for

CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n").decode()


def _kubeconfig(tmp_path: Path, user: dict) -> str:
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "current-context": "b",
                "contexts": [
                    {"name": "a", "context": {"cluster": "c1", "user": "u1"}},
                    {"name": "b", "context": {"cluster": "c2", "user": "u2"}},
                ],
                "clusters": [
                    {"name": "c1", "cluster": {"server": "https://one"}},
                    {
                        "name": "c2",
                        "cluster": {"server": "https://two:6443/", "certificate-authority-data": CA},
                    },
                ],
                "users": [{"name": "u1", "user": {}}, {"name": "u2", "user": user}],
            }
        )
    )
    return str(path)


def test_token_kubeconfig_current_context(tmp_path: Path) -> None:
    conn = asyncio.run(connection(asyncio.run(load_configuration(_kubeconfig(tmp_path, {"token": "tok"})))))
    assert conn.server == "https://two:6443" and conn.token == "tok" and not conn.insecure
    assert conn.ca_path and "BEGIN CERTIFICATE" in Path(conn.ca_path).read_text()


def test_exec_plugin_kubeconfig(tmp_path: Path) -> None:
    """What EKS/GKE/AKS kubeconfigs hold: the token comes from a command (client.authentication.k8s.io/v1)."""
    plugin = tmp_path / "plugin.py"
    cred = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential"}
    plugin.write_text(
        f"import json, sys\njson.dump({{**{cred!r}, 'status': {{'token': 'from-exec'}}}}, sys.stdout)\n"
    )
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin)],
            "interactiveMode": "Never",
        }
    }

    async def load() -> str | None:
        return (await connection(await load_configuration(_kubeconfig(tmp_path, user)))).token

    assert asyncio.run(load()) == "from-exec"


def test_unusable_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot use kubeconfig"):
        asyncio.run(load_configuration(str(tmp_path / "missing")))


def test_paths_and_errors() -> None:
    assert path_for("Deployment", "ns", "d", "status") == "/apis/apps/v1/namespaces/ns/deployments/d/status"
    assert path_for("ConfigMap", "ns") == "/api/v1/namespaces/ns/configmaps"
    assert path_for("Namespace", "ignored", "x") == "/api/v1/namespaces/x"
    exc = ApiException(status=403, reason="Forbidden")
    exc.body = json.dumps(
        {
            "reason": "Forbidden",
            "message": "unable to create new content in namespace x because it is being terminated",
            "details": {"causes": [{"type": "NamespaceTerminating"}]},
        }
    )
    err = ApiError.of(exc)
    assert err.status == 403 and err.namespace_terminating and "being terminated" in str(err)
    plain = ApiException(status=500, reason="Internal")
    plain.body = "not json"
    assert ApiError.of(plain).status == 500 and not ApiError.of(plain).namespace_terminating
