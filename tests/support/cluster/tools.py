"""Locating and building the control-plane binary (`make cluster-tools`).

The Go program lives in tests/cluster/controlplane (its own go.mod, pinned k8s.io/kubernetes and
etcd modules). It is built into the ignored .tools/bin; Go's build and module caches stay where Go
keeps them (outside the repository), so a rebuild after the first one takes seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
SOURCE_DIR = REPO_ROOT / "tests" / "cluster" / "controlplane"
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
BINARY = TOOLS_BIN / "controlplane"
GO_CANDIDATES = ("/usr/local/go/bin/go",)
MIN_GO = (1, 26)


class ToolError(RuntimeError):
    """The control plane cannot be built or found (message says what to do)."""


def find_go() -> str | None:
    """`go` from PATH, else /usr/local/go/bin/go."""
    found = shutil.which("go")
    if found:
        return found
    return next((c for c in GO_CANDIDATES if os.access(c, os.X_OK)), None)


def go_version(go: str) -> tuple[int, int]:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()
    parts = out.removeprefix("go").split(".")
    return int(parts[0]), int(parts[1])


def sources() -> list[Path]:
    return sorted([*SOURCE_DIR.glob("*.go"), SOURCE_DIR / "go.mod", SOURCE_DIR / "go.sum"])


def is_stale(binary: Path = BINARY) -> bool:
    """True when the binary is missing or older than any of its sources."""
    if not binary.exists():
        return True
    built = binary.stat().st_mtime
    return any(p.stat().st_mtime > built for p in sources())


def kubectl() -> str:
    """.tools/bin/kubectl (make tools), else one on PATH."""
    local = TOOLS_BIN / "kubectl"
    found = str(local) if local.exists() else shutil.which("kubectl")
    if not found:
        raise ToolError("kubectl not found: run `make tools` (it extracts kubectl and helm into .tools/bin)")
    return found


def helm() -> str:
    local = TOOLS_BIN / "helm"
    found = str(local) if local.exists() else shutil.which("helm")
    if not found:
        raise ToolError("helm not found: run `make tools`")
    return found


def kubernetes_version() -> str:
    """The k8s.io/kubernetes version go.mod pins (e.g. v1.37.2)."""
    m = re.search(r"^\s*k8s\.io/kubernetes\s+(v\S+)", (SOURCE_DIR / "go.mod").read_text(), re.MULTILINE)
    if not m:
        raise ToolError("k8s.io/kubernetes not found in tests/cluster/controlplane/go.mod")
    return m.group(1)


def version_ldflags() -> str:
    """-X flags that stamp the version as upstream's release build does (`kubectl version`, helm's
    kubeVersion checks and discovery read it; unstamped it is v0.0.0-master+$Format:%H$)."""
    version = kubernetes_version()
    major, minor = version.removeprefix("v").split(".")[:2]
    values = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "gitCommit": "0000000000000000000000000000000000000000",
        # deterministic (go.sum's mtime): an unchanged tree hits Go's link cache
        "buildDate": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime((SOURCE_DIR / "go.sum").stat().st_mtime)
        ),
    }
    pkgs = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    return " ".join(f"-X {pkg}.{k}={v}" for pkg in pkgs for k, v in values.items())


def build(binary: Path = BINARY, verbose: bool = True) -> float:
    """`go build` the control plane into `binary`; returns the seconds it took. Raises ToolError."""
    go = find_go()
    if go is None:
        raise ToolError(
            "Go >= 1.26 is needed to build the control plane (looked in PATH and "
            "/usr/local/go/bin): install it from https://go.dev/dl/"
        )
    if go_version(go) < MIN_GO:
        raise ToolError(f"{go} is Go {'.'.join(map(str, go_version(go)))}; the control plane needs >= 1.26")
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(binary.name + ".new")
    cmd = [go, "build", "-v", "-trimpath", f"-ldflags=-s -w {version_ldflags()}", "-o", str(tmp), "."]
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": os.environ.get("GOFLAGS", "-mod=readonly")}
    start = time.monotonic()
    if verbose:
        print(
            f"building {binary} with {go} (first build ~12 min: k8s.io/kubernetes + etcd; "
            "later builds are seconds)",
            file=sys.stderr,
            flush=True,
        )
    proc = subprocess.Popen(
        cmd, cwd=SOURCE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    count, last_print = 0, 0.0
    tail: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        tail = [*tail[-40:], line]
        if line and not line.startswith(("#", " ", "\t", "go: downloading")):
            count += 1
        now = time.monotonic()
        if verbose and (now - last_print > 5 or line.startswith("go: downloading")):
            last_print = now
            print(
                f"  [{now - start:6.0f}s] {count} packages compiled; {line[:100]}",
                file=sys.stderr,
                flush=True,
            )
    if proc.wait() != 0:
        tmp.unlink(missing_ok=True)
        raise ToolError("go build of the control plane failed:\n" + "\n".join(tail))
    tmp.replace(binary)
    took = time.monotonic() - start
    if verbose:
        print(f"built {binary} in {took:.1f}s ({count} packages compiled)", file=sys.stderr, flush=True)
    return took


def binary_version(binary: Path = BINARY) -> str:
    return subprocess.run([str(binary), "version"], capture_output=True, text=True).stdout.strip()


def ensure_binary(verbose: bool = True) -> Path:
    """The control-plane binary, (re)built when missing or stale and Go is available."""
    if is_stale():
        if BINARY.exists() and find_go() is None:
            return BINARY  # sources changed but no Go to rebuild: use what is there
        build(verbose=verbose)
    return BINARY
