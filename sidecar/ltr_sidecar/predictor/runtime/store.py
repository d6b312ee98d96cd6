"""Versioned predictor store on a directory (a PVC in the cluster).

Layout: `<root>/<version>/` is a complete artifact (see artifact.py); versions are immutable.
`publish` copies into `<root>/.tmp-*`, fsyncs every file and directory, then `os.rename`s into place,
so a reader either sees no version or a complete one. Deletion renames to `<root>/.trash-*` first.
`open_store(uri)` is the URI entry point: plain paths and `file://` now; an object-store backend
(`s3://`) only needs to implement the `VersionStore` protocol.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ltr_sidecar.predictor.runtime.artifact import MANIFEST, PredictorLoadError, read_manifest

VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class StoreError(RuntimeError):
    """A store operation that cannot be done (unknown version, version exists, bad name...)."""


class VersionNotFound(StoreError):
    """The store has no such version (or no versions at all)."""


@dataclass(frozen=True)
class VersionInfo:
    version: str
    published_at: float
    path: Path
    val_kendall_tau: float | None
    parent: str | None
    backbone: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "published_at": self.published_at,
            "path": str(self.path),
            "val_kendall_tau": self.val_kendall_tau,
            "parent": self.parent,
            "backbone": self.backbone,
        }


class VersionStore(Protocol):
    """What the sidecar, retrain job and CLI need from any store backend."""

    def publish(self, src_dir: str | Path, version: str) -> Path: ...
    def resolve(self, version: str) -> Path: ...
    def list_versions(self) -> list[VersionInfo]: ...
    def latest(self) -> str | None: ...
    def retain(self, keep: int, protect: Iterable[str] = ()) -> list[str]: ...


def _fsync_tree(path: Path) -> None:
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories
    finally:
        os.close(fd)


def validate_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION_RE.match(version) or version in ("latest",):
        raise StoreError(
            f"invalid version name {version!r}: use letters, digits, '.', '_' or '-' (max 63), "
            "not starting with '.' and not 'latest'"
        )
    return version


class PredictorStore:
    """Local-directory implementation of `VersionStore`."""

    def __init__(self, root: str | Path, create: bool = True) -> None:
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise StoreError(f"predictor store not found: {self.root}")

    def publish(self, src_dir: str | Path, version: str) -> Path:
        """Atomically publish a copy of the artifact in `src_dir` as `version` (immutable)."""
        validate_version(version)
        src = Path(src_dir)
        try:
            read_manifest(src)
        except PredictorLoadError as exc:
            raise StoreError(f"refusing to publish {src}: {exc}") from exc
        target = self.root / version
        if target.exists():
            raise StoreError(f"version {version!r} already exists in {self.root}; versions are immutable")
        tmp = self.root / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
        try:
            shutil.copytree(src, tmp)
            mpath = tmp / MANIFEST
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
            manifest["version"] = version
            manifest["published_at"] = time.time()
            mpath.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            read_manifest(tmp)  # checksums still hold after the copy
            _fsync_tree(tmp)
            try:
                os.rename(tmp, target)
            except OSError as exc:
                raise StoreError(f"version {version!r} appeared concurrently in {self.root}") from exc
            _fsync_dir(self.root)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def resolve(self, version: str) -> Path:
        """Directory of a published version ('latest' = newest); StoreError if unknown."""
        if version == "latest":
            newest = self.latest()
            if newest is None:
                raise VersionNotFound(f"predictor store {self.root} holds no versions yet")
            version = newest
        validate_version(version)
        path = self.root / version
        if not (path / MANIFEST).is_file():
            known = ", ".join(v.version for v in self.list_versions()) or "none"
            raise VersionNotFound(f"unknown predictor version {version!r} in {self.root} (known: {known})")
        return path

    def list_versions(self) -> list[VersionInfo]:
        """Published versions, oldest first (unreadable directories are ignored)."""
        out: list[VersionInfo] = []
        if not self.root.is_dir():
            return out
        for d in self.root.iterdir():
            if d.name.startswith(".") or not d.is_dir() or not VERSION_RE.match(d.name):
                continue
            try:
                m = read_manifest(d, verify=False)
            except PredictorLoadError:
                continue
            tau = m.get("val_kendall_tau")
            out.append(
                VersionInfo(
                    version=d.name,
                    published_at=float(m.get("published_at", d.stat().st_mtime)),
                    path=d,
                    val_kendall_tau=float(tau) if isinstance(tau, int | float) else None,
                    parent=m.get("parent"),
                    backbone=str(m.get("backbone")),
                )
            )
        out.sort(key=lambda v: (v.published_at, v.version))
        return out

    def latest(self) -> str | None:
        versions = self.list_versions()
        return versions[-1].version if versions else None

    def next_version(self, prefix: str = "v") -> str:
        """`<prefix><N+1>` over existing `<prefix><N>` versions."""
        nums = [
            int(m.group(1))
            for v in self.list_versions()
            if (m := re.fullmatch(re.escape(prefix) + r"(\d+)", v.version))
        ]
        return f"{prefix}{max(nums, default=0) + 1}"

    def retain(self, keep: int, protect: Iterable[str] = ()) -> list[str]:
        """Delete all but the `keep` newest versions, never one named in `protect`; returns deleted."""
        if keep < 1:
            raise StoreError("retention keep must be >= 1")
        protected = {p for p in protect if p}
        versions = self.list_versions()
        doomed = [v.version for v in versions[:-keep] if v.version not in protected]
        for name in doomed:
            trash = self.root / f".trash-{name}-{uuid.uuid4().hex[:8]}"
            os.rename(self.root / name, trash)
            shutil.rmtree(trash, ignore_errors=True)
        return doomed

    def clean_temporaries(self) -> int:
        """Remove leftovers of interrupted publishes/deletes."""
        n = 0
        for d in self.root.iterdir():
            if d.name.startswith((".tmp-", ".trash-")):
                shutil.rmtree(d, ignore_errors=True)
                n += 1
        return n


def open_store(uri: str | Path) -> PredictorStore:
    """A store for a path or `file://` URI; other schemes are reserved (clear error)."""
    s = str(uri)
    if s.startswith("file://"):
        return PredictorStore(s[len("file://") :])
    if "://" in s:
        raise StoreError(
            f"store URI scheme not supported yet: {s!r} (supported: a directory path or file://)"
        )
    return PredictorStore(s)
