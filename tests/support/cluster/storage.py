"""Storage for the test cluster: StorageClasses backed by a pool of hostPath PersistentVolumes.

The harness creates, per class, a few hostPath PVs (all access modes, a large capacity, reclaim
policy Retain) under state/pv/. The real PV controller binds claims to them (the default class
binds WaitForFirstConsumer, so the real scheduler's volume binding takes part). `recycle_loop`
(run by the node agent) plays the storage admin: a Released PV is wiped and made Available again.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.support.cluster.rest import MERGE, Api, ApiError, AsyncApi

POOL_LABEL = "ltrserving.dev/test-pv-pool"
DEFAULT_CLASS = "standard"
PROVISIONER = "kubernetes.io/no-provisioner"


def create(
    api: Api, state: Path, classes: dict[str, int], default: str = DEFAULT_CLASS, capacity: str = "100Gi"
) -> None:
    """StorageClasses `classes` (name → number of PVs), `default` marked as the default class."""
    for name, count in classes.items():
        api.ensure(
            "/apis/storage.k8s.io/v1/storageclasses",
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": name,
                    "annotations": {
                        "storageclass.kubernetes.io/is-default-class": str(name == default).lower()
                    },
                },
                "provisioner": PROVISIONER,
                "reclaimPolicy": "Retain",
                "volumeBindingMode": "WaitForFirstConsumer" if name == default else "Immediate",
            },
        )
        for i in range(count):
            pv = f"pool-{name}-{i}"
            path = state / "pv" / pv
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o777)  # like local-path provisioners: any pod uid may write
            api.ensure(
                "/api/v1/persistentvolumes",
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": pv, "labels": {POOL_LABEL: name}},
                    "spec": {
                        "capacity": {"storage": capacity},
                        "storageClassName": name,
                        "accessModes": ["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "volumeMode": "Filesystem",
                        "hostPath": {"path": str(path.resolve()), "type": "DirectoryOrCreate"},
                    },
                },
            )


def _wipe(path: Path) -> None:
    for entry in path.iterdir() if path.is_dir() else []:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


async def recycle_loop(api: AsyncApi, log: Callable[[str], None], period_s: float = 2.0) -> None:
    """Forever: wipe Released pool PVs and make them Available (the storage admin's job)."""
    while True:
        try:
            pvs = await api.request("GET", "/api/v1/persistentvolumes", params={"labelSelector": POOL_LABEL})
            for pv in pvs.get("items", []):
                if (pv.get("status") or {}).get("phase") != "Released":
                    continue
                await asyncio.to_thread(_wipe, Path(pv["spec"]["hostPath"]["path"]))
                await api.request(
                    "PATCH",
                    f"/api/v1/persistentvolumes/{pv['metadata']['name']}",
                    {"spec": {"claimRef": None}},
                    MERGE,
                )
                log(f"recycled {pv['metadata']['name']}")
        except (ApiError, OSError) as exc:
            log(f"pv recycler: {exc}")
        await asyncio.sleep(period_s)
