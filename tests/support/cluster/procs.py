"""Daemon processes of a test cluster: spawn detached, record pids, stop them (even after a crash).

Every process the harness starts (control plane, node agent, the pods' processes) carries the
environment marker ``LTR_TEST_CLUSTER=<state dir>``; ``sweep`` finds leftovers through
``/proc/*/environ`` so ``cluster-down`` cleans up even when the pid files are stale.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

MARKER = "LTR_TEST_CLUSTER"


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def spawn(
    name: str, argv: list[str], state: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> int:
    """Start `argv` in its own session (it outlives the caller); log in state/logs, pid in state/pids."""
    (state / "logs").mkdir(parents=True, exist_ok=True)
    (state / "pids").mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {}), MARKER: str(state.resolve())}
    with open(state / "logs" / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    (state / "pids" / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def recorded(state: Path) -> dict[str, int]:
    """name → pid from state/pids."""
    out: dict[str, int] = {}
    for f in sorted((state / "pids").glob("*.pid")) if (state / "pids").is_dir() else []:
        with contextlib.suppress(ValueError, OSError):
            out[f.stem] = int(f.read_text().strip())
    return out


def marked(state: Path) -> list[int]:
    """Pids of live processes carrying this cluster's marker (excluding this process)."""
    needle = f"{MARKER}={state.resolve()}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def terminate(pids: Iterable[int], grace_s: float = 10.0) -> list[int]:
    """SIGTERM, wait up to `grace_s`, SIGKILL what is left; returns the pids that needed SIGKILL."""
    pids = [p for p in pids if alive(p)]
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    stubborn = [p for p in pids if alive(p)]
    _signal(stubborn, signal.SIGKILL)
    return stubborn


def sweep(state: Path, grace_s: float = 10.0, order: Iterable[str] = ()) -> None:
    """Stop every process of the cluster at `state`: recorded ones in `order` first, then any marked one."""
    pids = recorded(state)
    for name in order:
        if name in pids:
            terminate([pids.pop(name)], grace_s)
    terminate(list(pids.values()), grace_s)
    for _ in range(3):  # children may be forked while we kill their parents
        left = marked(state)
        if not left:
            return
        terminate(left, min(grace_s, 3.0))
