"""Pod volumes of the test node agent, laid out as kubelet lays them out.

ConfigMap, Secret, projected (service-account token via the TokenRequest API, ConfigMaps, Secrets,
downward API) and downwardAPI volumes are written with kubelet's atomic-writer layout: a timestamped
`..YYYY_…` directory, a `..data` symlink swapped atomically on every change and per-key symlinks
into `..data`, so a container that mounts the directory sees updates as one consistent snapshot.
emptyDir is a directory; hostPath and PersistentVolumeClaims (bound to hostPath/local PVs) resolve
to host paths. `refresh` re-reads the sources and swaps in what changed.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.cluster.podspec import SpecError, field_ref, resource_ref
from tests.support.cluster.rest import ApiError, AsyncApi

Payload = dict[str, tuple[bytes, int]]  # relative path → (content, mode)


class MountPending(Exception):
    """A volume cannot be set up yet (missing object, unbound claim); kubelet retries: FailedMount."""


def write_atomic(target: Path, payload: Payload, fs_group: int | None = None) -> bool:
    """Make `target` hold exactly `payload` (kubelet's AtomicWriter); False when nothing changed.
    With the pod's fsGroup, files belong to that group and are group-readable (kubelet's
    SetVolumeOwnership: a 0400 Secret key becomes 0440 root:fsGroup)."""
    if fs_group is not None:
        payload = {rel: (content, mode | 0o040) for rel, (content, mode) in payload.items()}
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / "..data"
    if data_link.is_symlink():
        current = target / os.readlink(data_link)
        old = {
            str(p.relative_to(current)): (p.read_bytes(), p.stat().st_mode & 0o777)
            for p in current.rglob("*")
            if p.is_file()
        }
        if old == payload:
            return False
    stamp = target / time.strftime(f"..%Y_%m_%d_%H_%M_%S.{time.time_ns() % 10**9:09d}")
    stamp.mkdir(mode=0o755)
    for rel, (content, mode) in payload.items():
        path = stamp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
        if fs_group is not None:
            os.chown(path, -1, fs_group)
    previous = os.readlink(data_link) if data_link.is_symlink() else None
    tmp_link = target / "..data_tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(stamp.name)
    tmp_link.rename(data_link)  # the atomic swap
    tops = {rel.split("/")[0] for rel in payload}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            link.symlink_to(f"..data/{top}")
    for entry in target.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()
    if previous:
        shutil.rmtree(target / previous, ignore_errors=True)
    return True


def _items(data: dict[str, bytes], items: list[dict[str, Any]] | None, mode: int) -> Payload:
    if not items:
        return {k: (v, mode) for k, v in data.items()}
    out: Payload = {}
    for item in items:
        if item["key"] not in data:
            raise MountPending(f"configmap/secret has no key {item['key']!r}")
        out[item["path"]] = (data[item["key"]], item.get("mode", mode))
    return out


@dataclass
class PodVolumes:
    """The volumes of one pod under `root` (state/pods/<uid>/volumes)."""

    api: AsyncApi
    pod: dict[str, Any]
    root: Path
    allocatable: dict[str, str]
    pvc_paths: dict[str, Path] = field(default_factory=dict)
    view: Callable[[], dict[str, Any]] | None = None  # the pod with the IPs kubelet knows
    tokens: dict[str, tuple[float, float, bytes]] = field(default_factory=dict)  # path → (got, ttl, token)

    @property
    def fs_group(self) -> int | None:
        group = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
        return None if group is None else int(group)

    @property
    def ns(self) -> str:
        return str(self.pod["metadata"]["namespace"])

    async def _object(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        plural = "configmaps" if kind == "ConfigMap" else "secrets"
        obj = await self.api.get(f"/api/v1/namespaces/{self.ns}/{plural}/{name}")
        if obj is None:
            if optional:
                return None
            raise MountPending(f'{kind.lower()} "{name}" not found')
        if kind == "ConfigMap":
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
            return data
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}

    async def _token(self, source: dict[str, Any]) -> bytes:
        path = source.get("path", "token")
        ttl = float(source.get("expirationSeconds", 3600))
        got = self.tokens.get(path)
        if got and time.time() - got[0] < 0.8 * got[1]:
            return got[2]
        meta = self.pod["metadata"]
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [source["audience"]] if source.get("audience") else [],
                "expirationSeconds": int(ttl),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        try:
            reply = await self.api.request(
                "POST", f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token", request
            )
        except ApiError as exc:
            raise MountPending(f"cannot get a token for serviceaccount {sa}: {exc}") from exc
        token = reply["status"]["token"].encode()
        self.tokens[path] = (time.time(), ttl, token)
        return token

    def _downward(self, items: list[dict[str, Any]], mode: int) -> Payload:
        out: Payload = {}
        for item in items:
            try:
                pod = self.view() if self.view else self.pod
                if "fieldRef" in item:
                    value = field_ref(pod, item["fieldRef"])
                else:
                    value = resource_ref(self.pod, item["resourceFieldRef"], "", self.allocatable)
            except SpecError as exc:
                raise MountPending(str(exc)) from exc
            out[item["path"]] = (value.encode(), item.get("mode", mode))
        return out

    async def payload(self, volume: dict[str, Any]) -> Payload | None:
        """What an atomic-writer volume should hold now (None: not such a volume)."""
        if "configMap" in volume or "secret" in volume:
            src = volume.get("configMap") or volume["secret"]
            kind = "ConfigMap" if "configMap" in volume else "Secret"
            data = await self._object(
                kind, src.get("name") or src.get("secretName"), bool(src.get("optional"))
            )
            return _items(data or {}, src.get("items"), src.get("defaultMode", 0o644))
        if "downwardAPI" in volume:
            src = volume["downwardAPI"]
            return self._downward(src.get("items") or [], src.get("defaultMode", 0o644))
        if "projected" in volume:
            mode = volume["projected"].get("defaultMode", 0o644)
            out: Payload = {}
            for source in volume["projected"].get("sources") or []:
                if "serviceAccountToken" in source:
                    out[source["serviceAccountToken"].get("path", "token")] = (
                        await self._token(source["serviceAccountToken"]),
                        mode,
                    )
                elif "configMap" in source or "secret" in source:
                    src = source.get("configMap") or source["secret"]
                    kind = "ConfigMap" if "configMap" in source else "Secret"
                    data = await self._object(kind, src["name"], bool(src.get("optional")))
                    out.update(_items(data or {}, src.get("items"), mode))
                elif "downwardAPI" in source:
                    out.update(self._downward(source["downwardAPI"].get("items") or [], mode))
                else:
                    raise MountPending(f"unsupported projected source {sorted(source)}")
            return out
        return None

    async def _claim_path(self, claim: str) -> Path:
        pvc = await self.api.get(f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims/{claim}")
        if pvc is None:
            raise MountPending(f'persistentvolumeclaim "{claim}" not found')
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if not pv_name or (pvc.get("status") or {}).get("phase") != "Bound":
            raise MountPending(f'persistentvolumeclaim "{claim}" is not bound yet')
        pv = await self.api.get(f"/api/v1/persistentvolumes/{pv_name}")
        if pv is None:
            raise MountPending(f'persistentvolume "{pv_name}" not found')
        source = pv["spec"].get("hostPath") or pv["spec"].get("local")
        if not source:
            raise MountPending(f'persistentvolume "{pv_name}" is neither hostPath nor local')
        return Path(source["path"])

    async def setup(self) -> dict[str, Path]:
        """Host path of every volume (raises MountPending until all can be set up)."""
        paths: dict[str, Path] = {}
        for volume in self.pod["spec"].get("volumes") or []:
            name, target = volume["name"], self.root / volume["name"]
            if "emptyDir" in volume:
                target.mkdir(parents=True, exist_ok=True)
                target.chmod(0o777)
            elif "hostPath" in volume:
                target = Path(volume["hostPath"]["path"])
                if volume["hostPath"].get("type") in ("DirectoryOrCreate", None, ""):
                    target.mkdir(parents=True, exist_ok=True)
            elif "persistentVolumeClaim" in volume:
                target = await self._claim_path(volume["persistentVolumeClaim"]["claimName"])
                self.pvc_paths[name] = target
            else:
                payload = await self.payload(volume)
                if payload is None:
                    raise MountPending(
                        f"volume {name}: unsupported volume type {sorted(set(volume) - {'name'})}"
                    )
                write_atomic(target, payload, self.fs_group)
            paths[name] = target
        return paths

    async def refresh(self) -> list[str]:
        """Re-read every atomic-writer volume; names of those that changed."""
        changed = []
        for volume in self.pod["spec"].get("volumes") or []:
            try:
                payload = await self.payload(volume)
            except (MountPending, ApiError):
                continue  # kubelet keeps the last good content
            if payload is not None and write_atomic(self.root / volume["name"], payload, self.fs_group):
                changed.append(volume["name"])
        return changed
