"""Choose the operator's Kubernetes client by measurement (issue 11, item 5).

Runs each candidate against a running control plane (`make cluster-up`): server-side apply of a
ConfigMap with a field manager, a GET, a merge patch, a delete, N rounds each, from asyncio where the
library offers it; then the same list through a kubeconfig whose user is an **exec plugin** (what
EKS/GKE/AKS kubeconfigs hold). Also records install footprint and import time.

The candidates are not project dependencies; install them into a scratch venv:

    python -m venv /tmp/kc && /tmp/kc/bin/pip install kubernetes_asyncio lightkube kr8s pyyaml
    /tmp/kc/bin/python benchmarks/kube_clients.py --kubeconfig .cluster/kubeconfig

Writes benchmarks/results/kube-clients.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path

import yaml

NAMESPACE = "default"
Round = Callable[[str], Awaitable[None]]


def footprint(dist: str) -> dict[str, float | str]:
    """Installed size of a distribution and its non-stdlib requirements (MB), and import time (ms)."""
    seen: set[str] = set()
    todo, total = [dist], 0
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            d = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        total += sum((f.size or 0) for f in d.files or [])
        for req in d.requires or []:
            if "extra ==" not in req:
                todo.append(re.match(r"[A-Za-z0-9._-]+", req).group(0))  # type: ignore[union-attr]
    module = {"kubernetes-asyncio": "kubernetes_asyncio"}.get(dist, dist)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        times.append((time.perf_counter() - t) * 1000)
    return {
        "version": metadata.version(dist),
        "installed_mb_with_deps": round(total / 1e6, 1),
        "deps": ", ".join(sorted(seen - {dist.lower()})),
        "import_ms": round(min(times)),
    }


def cm(name: str, value: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {"k": value},
    }


async def kubernetes_asyncio_round(kubeconfig: str) -> tuple[Round, Callable[[], Awaitable[list[str]]]]:
    from kubernetes_asyncio import client, config

    api = await config.new_client_from_config(config_file=kubeconfig)
    base = f"/api/v1/namespaces/{NAMESPACE}/configmaps"

    async def call(
        method: str, path: str, body: dict | None = None, ctype: str = "application/json", **q: str
    ) -> dict:
        return await api.call_api(
            path,
            method,
            query_params=list(q.items()),
            header_params={"Content-Type": ctype, "Accept": "application/json"},
            body=body,
            response_types_map={200: "object", 201: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )

    async def one(name: str) -> None:
        await call(
            "PATCH",
            f"{base}/{name}",
            cm(name, "a"),
            "application/apply-patch+yaml",
            fieldManager="bench",
            force="true",
        )
        await call("GET", f"{base}/{name}")
        await call("PATCH", f"{base}/{name}", {"data": {"k": "b"}}, "application/merge-patch+json")
        await call("DELETE", f"{base}/{name}")

    async def namespaces() -> list[str]:
        got = await client.CoreV1Api(api).list_namespace()
        return [n.metadata.name for n in got.items]

    return one, namespaces


async def lightkube_round(kubeconfig: str) -> tuple[Round, Callable[[], Awaitable[list[str]]]]:
    from lightkube import AsyncClient, KubeConfig
    from lightkube.resources.core_v1 import ConfigMap, Namespace
    from lightkube.types import PatchType

    kc = AsyncClient(config=KubeConfig.from_file(kubeconfig), field_manager="bench")

    async def one(name: str) -> None:
        await kc.apply(
            ConfigMap.from_dict(cm(name, "a")) if hasattr(ConfigMap, "from_dict") else cm(name, "a"),
            force=True,
        )
        await kc.get(ConfigMap, name, namespace=NAMESPACE)
        await kc.patch(ConfigMap, name, {"data": {"k": "b"}}, namespace=NAMESPACE, patch_type=PatchType.MERGE)
        await kc.delete(ConfigMap, name, namespace=NAMESPACE)

    async def namespaces() -> list[str]:
        return [n.metadata.name async for n in kc.list(Namespace)]

    return one, namespaces


async def kr8s_round(kubeconfig: str) -> tuple[Round, Callable[[], Awaitable[list[str]]]]:
    import kr8s.asyncio
    from kr8s.asyncio.objects import ConfigMap

    api = await kr8s.asyncio.api(kubeconfig=kubeconfig)

    async def one(name: str) -> None:
        # no server-side apply in kr8s's object API: the raw call is the only way
        async with api.call_api(
            "PATCH",
            version="v1",
            url=f"configmaps/{name}",
            namespace=NAMESPACE,
            params={"fieldManager": "bench", "force": "true"},
            headers={"Content-Type": "application/apply-patch+yaml"},
            content=json.dumps(cm(name, "a")),
        ):
            pass
        obj = await ConfigMap.get(name, namespace=NAMESPACE, api=api)
        await obj.patch({"data": {"k": "b"}}, type="merge")
        await obj.delete()

    async def namespaces() -> list[str]:
        return [n.name async for n in api.get("namespaces")]

    return one, namespaces


NOTES = """Besides the table (checked by reading each library's API, not timed):
- server-side apply: lightkube `apply(field_manager=, force=)`; kubernetes_asyncio
  `DynamicClient.server_side_apply` or the raw path API with `application/apply-patch+yaml`; kr8s has
  none in its object API (the raw `call_api` above).
- kopf's login wants the credentials themselves: kubernetes_asyncio's `Configuration` holds them after
  the exec plugin ran (token, or certificate files) and refreshes rotated service-account tokens;
  lightkube keeps exec inside an httpx auth flow.
- kopf already brings aiohttp, kubernetes_asyncio's transport; lightkube and kr8s add httpx stacks.

Choice: kubernetes_asyncio (exec plugins work, SSA, async, credentials shareable with kopf's login, no
new transport); the lightest, lightkube, fails the exec-plugin kubeconfig (client.authentication.k8s.io/v1).
"""

CANDIDATES = {
    "kubernetes-asyncio": kubernetes_asyncio_round,
    "lightkube": lightkube_round,
    "kr8s": kr8s_round,
}


def exec_kubeconfig(kubeconfig: str, out: Path) -> str:
    """A copy of the admin kubeconfig whose user gets its credential from an exec plugin."""
    cfg = yaml.safe_load(Path(kubeconfig).read_text())
    user = cfg["users"][0]["user"]
    base = Path(kubeconfig).parent

    def read(key: str) -> str:
        if user.get(f"{key}-data"):
            return base64.b64decode(user[f"{key}-data"]).decode()
        return (base / user[key]).read_text()

    cred = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"clientCertificateData": read("client-certificate"), "clientKeyData": read("client-key")},
    }
    plugin = out / "exec-plugin.py"
    plugin.write_text(f"import json, sys\njson.dump({json.dumps(cred)}, sys.stdout)\n")
    cluster = cfg["clusters"][0]["cluster"]
    if cluster.get("certificate-authority"):
        cluster["certificate-authority"] = str(base / cluster["certificate-authority"])
    cfg["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin)],
            "interactiveMode": "Never",
        }
    }
    path = out / "exec-kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


async def measure(name: str, kubeconfig: str, exec_cfg: str, rounds: int) -> dict:
    row: dict = footprint(name)
    one, _ = await CANDIDATES[name](kubeconfig)
    await one(f"bench-{name}-warm")
    lat = []
    for i in range(rounds):
        t = time.perf_counter()
        await one(f"bench-{name}-{i}")
        lat.append((time.perf_counter() - t) * 1000)
    row["ssa_get_patch_delete_ms_median"] = round(statistics.median(lat), 2)
    row["rounds"] = rounds
    try:
        _, namespaces = await CANDIDATES[name](exec_cfg)
        row["exec_plugin"] = "works" if "default" in await namespaces() else "no default namespace"
    except Exception as exc:
        row["exec_plugin"] = f"fails: {type(exc).__name__}: {str(exc)[:120]}"
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", ".cluster/kubeconfig"))
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exec_cfg = exec_kubeconfig(args.kubeconfig, Path(tmp))
        rows = {}
        for name in CANDIDATES:
            print(f"[kube-clients] {name} ...", file=sys.stderr, flush=True)
            rows[name] = asyncio.run(measure(name, args.kubeconfig, exec_cfg, args.rounds))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "kube-clients.json").write_text(json.dumps(rows, indent=2) + "\n")
    cols = [
        "version",
        "installed_mb_with_deps",
        "import_ms",
        "ssa_get_patch_delete_ms_median",
        "exec_plugin",
        "deps",
    ]
    lines = ["| client | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {n} | " + " | ".join(str(r[c]) for c in cols) + " |" for n, r in rows.items()]
    (args.out_dir / "kube-clients.md").write_text(
        f"# Kubernetes clients, measured ({args.rounds} rounds of SSA+GET+merge-patch+DELETE of a ConfigMap "
        "against the local control plane; exec plugin = a kubeconfig whose user is an exec plugin)\n\n"
        + "\n".join(lines)
        + "\n\n"
        + NOTES
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
