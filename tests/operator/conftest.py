"""Fixtures for operator tests: the kmock-based Kubernetes API and a kopf-in-a-thread runner."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from kmock import ResourceInfo, Server

from ltr_operator.config import OperatorConfig
from ltr_operator.handlers import build_registry
from tests.support.kmock_shim import KubeAPI
from tests.support.operator import FakeSidecar, Http, KopfThread

# (resource key, kind, namespaced, subresources) served by the emulator.
RESOURCES: list[tuple[str, str, bool, set[str]]] = [
    ("ltrserving.dev/v1alpha1/ltrservings", "LTRServing", True, {"status", "scale"}),
    ("kopf.dev/v1/kopfexamples", "KopfExample", True, {"status"}),
    ("apps/v1/deployments", "Deployment", True, {"status", "scale"}),
    ("v1/services", "Service", True, {"status"}),
    ("v1/configmaps", "ConfigMap", True, set()),
    ("v1/secrets", "Secret", True, set()),
    ("networking.k8s.io/v1/networkpolicies", "NetworkPolicy", True, set()),
    ("v1/persistentvolumeclaims", "PersistentVolumeClaim", True, {"status"}),
    ("v1/serviceaccounts", "ServiceAccount", True, set()),
    ("v1/pods", "Pod", True, {"status"}),
    ("v1/events", "Event", True, set()),
    ("v1/namespaces", "Namespace", False, {"status"}),
    ("batch/v1/cronjobs", "CronJob", True, {"status"}),
    ("rbac.authorization.k8s.io/v1/roles", "Role", True, set()),
    ("rbac.authorization.k8s.io/v1/rolebindings", "RoleBinding", True, set()),
]
VERBS = {"get", "list", "watch", "create", "patch", "delete"}
ADMIN_TOKEN = "operator-admin-token"  # what the fake sidecars require on their admin plane


@pytest_asyncio.fixture()
async def kube() -> AsyncIterator[KubeAPI]:
    """A fresh in-memory Kubernetes API on 127.0.0.1 (see kmock_shim for what it emulates)."""
    async with KubeAPI() as api, Server(api):
        for key, kind, namespaced, subresources in RESOURCES:
            api.resources[key] = ResourceInfo(
                kind=kind,
                namespaced=namespaced,
                verbs=VERBS,
                singular=kind.lower(),
                subresources=subresources,
            )
        yield api


@pytest.fixture()
def kube_url(kube: KubeAPI) -> str:
    return str(kube.url).rstrip("/")


@pytest.fixture()
def kubeconfig(kube_url: str, tmp_path: Path) -> Path:
    """A kubeconfig file pointing at the emulator (token auth, plain HTTP)."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "kmock",
                "clusters": [{"name": "kmock", "cluster": {"server": kube_url}}],
                "users": [{"name": "tester", "user": {"token": "test-token"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
            }
        )
    )
    return path


@pytest_asyncio.fixture()
async def http(kube_url: str) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession() as session:
        yield Http(kube_url, session)


@pytest_asyncio.fixture()
async def operator(kubeconfig: Path, request: pytest.FixtureRequest) -> AsyncIterator[KopfThread]:
    """The real operator (kopf, in a thread) against the emulator; resync period from the test
    module's RESYNC_SECONDS (default 0.5 s)."""
    cfg = OperatorConfig(
        sidecar_image="ltr-sidecar:test",
        default_engine_images={"vllm": "vllm/vllm-openai:test"},
        resync_seconds=getattr(request.module, "RESYNC_SECONDS", 0.5),
        pod_probe_timeout_s=0.5,
        kubeconfig=str(kubeconfig),
        admin_token=ADMIN_TOKEN,
    )
    async with KopfThread(build_registry(cfg)) as thread:
        yield thread


@pytest.fixture()
def kopf_thread() -> Iterator[type[KopfThread]]:
    yield KopfThread


@pytest_asyncio.fixture()
async def fake_sidecars() -> AsyncIterator[Callable[[int], Any]]:
    """start(n) → (port, [(ip, FakeSidecar)]): n gRPC servers on 127.0.0.2.. sharing one port."""
    import socket

    import grpc

    from ltr.v1 import scheduler_pb2_grpc

    servers: list[Any] = []

    async def start(n: int) -> tuple[int, list[tuple[str, FakeSidecar]]]:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
            port = s.getsockname()[1]
        out = []
        for i in range(n):
            ip = f"127.0.0.{i + 2}"
            fake = FakeSidecar(token=ADMIN_TOKEN)
            server = grpc.aio.server()
            scheduler_pb2_grpc.add_PredictorAdminServicer_to_server(fake, server)
            server.add_insecure_port(f"{ip}:{port}")
            await server.start()
            servers.append(server)
            out.append((ip, fake))
        return port, out

    yield start
    for server in servers:
        await server.stop(None)


@pytest.fixture(scope="session")
def crd_tools() -> ModuleType:
    """tests/support/chart.py (strict schema, structural defaulting, CEL via cel-python), reused."""
    from tests.support import chart

    return chart
