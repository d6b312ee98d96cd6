"""Predictor artifact directories: `predictor.json` manifest, file checksums, data fingerprints.

An artifact is a directory with `predictor.json` plus the files it lists under `files`
(relative path -> sha256). Loading verifies the format tag, required keys and every checksum, so a
corrupt, truncated or mismatched artifact is refused with a clear `PredictorLoadError`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MANIFEST = "predictor.json"
FORMAT = "ltr-predictor/1"
REQUIRED_KEYS = ("format", "version", "backbone", "files")
MAX_ARTIFACT_BYTES = 2 * 1024**3  # refused before anything is loaded


class PredictorLoadError(RuntimeError):
    """An artifact that cannot be loaded (missing, corrupt, or for another backbone/format)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_fingerprint(pairs: Iterable[tuple[str, float]]) -> str:
    """Order-independent fingerprint of (prompt, length) training pairs: `sha256:<16 hex>` + count."""
    digests = sorted(hashlib.sha256(f"{p}\x00{float(n)!r}".encode()).digest() for p, n in pairs)
    h = hashlib.sha256()
    for d in digests:
        h.update(d)
    return f"sha256:{h.hexdigest()[:16]}/n={len(digests)}"


def write_manifest(directory: Path, manifest: dict[str, Any], files: Iterable[str]) -> dict[str, Any]:
    """Write `predictor.json` listing `files` (paths relative to `directory`) with their checksums."""
    directory = Path(directory)
    out = dict(manifest)
    out["format"] = FORMAT
    out.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    out["files"] = {rel: sha256_file(directory / rel) for rel in sorted(files)}
    for key in REQUIRED_KEYS:
        if key not in out:
            raise ValueError(f"manifest lacks {key!r}")
    (directory / MANIFEST).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def check_files_size(directory: Path, files: Mapping[str, Any]) -> None:
    """The listed files together must stay within MAX_ARTIFACT_BYTES."""
    total = sum((directory / rel).stat().st_size for rel in files if (directory / rel).is_file())
    if total > MAX_ARTIFACT_BYTES:
        raise PredictorLoadError(
            f"{directory}: artifact is {total} bytes, above the limit {MAX_ARTIFACT_BYTES}"
        )


def read_manifest(directory: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """Read and validate an artifact's manifest (and, with `verify`, its files' checksums)."""
    d = Path(directory)
    if not d.is_dir():
        raise PredictorLoadError(f"predictor artifact not found: {d} is not a directory")
    mpath = d / MANIFEST
    if not mpath.is_file():
        raise PredictorLoadError(f"{d}: no {MANIFEST}; not a predictor artifact")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PredictorLoadError(f"{mpath}: corrupt manifest ({exc})") from exc
    if not isinstance(manifest, dict):
        raise PredictorLoadError(f"{mpath}: manifest must be a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise PredictorLoadError(f"{mpath}: manifest lacks {', '.join(missing)}")
    if manifest["format"] != FORMAT:
        raise PredictorLoadError(
            f"{mpath}: unsupported artifact format {manifest['format']!r} (want {FORMAT})"
        )
    files = manifest["files"]
    if not isinstance(files, dict):
        raise PredictorLoadError(f"{mpath}: 'files' must map paths to sha256")
    if verify:
        check_files_size(d, files)
        for rel, digest in files.items():
            f = d / rel
            if not f.is_file():
                raise PredictorLoadError(f"{d}: artifact file {rel} is missing (incomplete artifact)")
            if sha256_file(f) != digest:
                raise PredictorLoadError(f"{d}: checksum mismatch for {rel} (corrupt or modified artifact)")
    return manifest
