"""The `cluster` tier: one real control plane + test node agent per session (tests/support/cluster).

Without root, Go or the control-plane binary the tier is skipped with the reason - except under
CI=true, where that is a failure. Build the binary beforehand with `make cluster-tools` (a first
build takes ~12 minutes; later ones seconds). LTR_CLUSTER_KEEP=1 leaves the cluster running.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.cluster import cluster as harness
from tests.support.cluster import controlplane, tools
from tests.support.cluster.release import CHART, OPERATOR_NAMESPACE, RELEASE, OperatorRelease


def unavailable(reason: str) -> NoReturn:
    """Skip the tier loudly, or fail under CI=true (the tier must run there)."""
    message = f"cluster tier unavailable: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: the cluster tier must run)", pytrace=False)
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)


@pytest.fixture(scope="session")
def cluster() -> Iterator[harness.Cluster]:
    """A running cluster: control plane, default StorageClass with hostPath PVs, shared scripted engine,
    node agent with nodes cpu-0 and gpu-0 (8 fake nvidia.com/gpu, tainted nvidia.com/gpu:NoSchedule)."""
    if os.geteuid() != 0:
        unavailable("the test node agent needs root (network and mount namespaces)")
    if not tools.BINARY.exists() and tools.find_go() is None:
        unavailable(
            "Go >= 1.26 not found (PATH, /usr/local/go/bin) and no .tools/bin/controlplane: "
            "install Go and run `make cluster-tools`"
        )
    try:
        tools.ensure_binary()
    except tools.ToolError as exc:
        unavailable(str(exc))
    state = Path(tempfile.mkdtemp(prefix="ltr-cluster-"))
    try:
        running = harness.up(state, verbose=False)
    except (controlplane.ClusterError, OSError) as exc:
        unavailable(f"the control plane did not start: {exc}")
    try:
        yield running
    finally:
        if os.environ.get("LTR_CLUSTER_KEEP"):  # debugging: leave it running, say where
            print(
                f"\nLTR_CLUSTER_KEEP: cluster left running at {state} (KUBECONFIG={running.kubeconfig}); "
                f"stop it with: python -m tests.support.cluster down --dir {state}"
            )
        else:
            harness.down(state)


@pytest.fixture
def namespace(cluster: harness.Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test (deleted afterwards; the namespace controller empties it)."""
    name = f"t-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{secrets.token_hex(2)}"
    name = "".join(ch for ch in name if ch.isalnum() or ch == "-")
    cluster.api.create(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    harness.wait(
        lambda: cluster.api.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        30,
        f"the default ServiceAccount in {name}",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator(cluster: harness.Cluster) -> Iterator[OperatorRelease]:
    """`helm install` of the chart (defaults, plus a 3 s resync for test speed); the operator pod runs the
    checkout's `ltr operator` as the chart's ServiceAccount with its projected token (in-cluster config)."""
    cluster.helm(
        "install",
        RELEASE,
        str(CHART),
        "-n",
        OPERATOR_NAMESPACE,
        "--create-namespace",
        "--wait",
        "--timeout",
        "180s",
        "--set",
        "operator.extraArgs={--resync-seconds=3}",
    )
    release = OperatorRelease(cluster)
    release.pod()
    yield release


@pytest.fixture(autouse=True)
def _no_forbidden_operator_requests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests using the operator fail when the operator got any 403 meanwhile (RBAC = production RBAC)."""
    if "operator" not in request.fixturenames:
        yield
        return
    release: OperatorRelease = request.getfixturevalue("operator")
    before = len(release.forbidden())
    yield
    new = release.forbidden()[before:]
    assert not new, "the operator was forbidden: " + "; ".join(
        f"{e['verb']} {e['objectRef'].get('resource')}/{e['objectRef'].get('subresource', '')} "
        f"in {e['objectRef'].get('namespace', '-')}"
        for e in new
    )
