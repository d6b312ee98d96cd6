"""Container launcher of the test node agent: `python -m tests.support.cluster.podexec SPEC.json`.

Runs as root, then becomes the container: joins the pod's network namespace, enters a private mount
(and UTS) namespace of its own, bind-mounts the pod's volumes at their container paths (read-only
where the spec says so, the root filesystem read-only with `readOnlyRootFilesystem`), sets the
hostname, drops to the container's uid/gid and execs the container command with its environment.
For a non-root uid, directories it could not traverse on the way to the interpreter (this machine's
Python lives under /root) are replaced in its mount namespace by a tmpfs holding just that path.
The host paths that stand in for the image (the interpreter, the checkout: `"image"`) stay visible even
where a volume is mounted over a directory above them (an emptyDir at /tmp over a checkout in /tmp).
With `"join": PID` it instead enters the namespaces of running container PID (exec probes).
Kept to the standard library and fast to start.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWNET = 0x00020000, 0x04000000, 0x40000000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    _check(
        libc.mount(source.encode() if source else None, target.encode(), None, flags, None),
        f"mount {source} on {target}",
    )


def _setns(path: str, kind: int) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _check(libc.setns(fd, kind), f"setns {path}")
    finally:
        os.close(fd)


def reveal(hidden: dict[str, list[str]]) -> None:
    """Make paths under directories other users cannot traverse (e.g. a Python under /root, mode 0700)
    reachable: a tmpfs over the directory that holds only the needed children, bind-mounted back."""
    for parent, children in hidden.items():
        fds = {
            child: os.open(os.path.join(parent, child), os.O_RDONLY | os.O_DIRECTORY) for child in children
        }
        _check(libc.mount(b"tmpfs", parent.encode(), b"tmpfs", 0, b"mode=0755"), f"tmpfs on {parent}")
        for child, fd in fds.items():
            os.mkdir(os.path.join(parent, child))
            _mount(f"/proc/self/fd/{fd}", os.path.join(parent, child), MS_BIND | MS_REC)
            os.close(fd)


def enter(spec: dict) -> None:
    """Namespaces and mounts of a new container (see the module doc)."""
    _setns(spec["netns"], CLONE_NEWNET)
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    _mount(None, "/", MS_REC | MS_PRIVATE)
    if spec.get("uid"):
        reveal(spec.get("reveal") or {})
    # Sources are opened first: a volume mounted over e.g. /tmp must not hide later sources under /tmp.
    sources = [os.open(m["source"], os.O_PATH) for m in spec.get("mounts", [])]
    image = {path: os.open(path, os.O_PATH) for path in spec.get("image", [])}
    targets = [m["target"] for m in spec.get("mounts", [])]
    for m, fd in zip(spec.get("mounts", []), sources, strict=True):  # before the root goes read-only:
        _mount(f"/proc/self/fd/{fd}", m["target"], MS_BIND | MS_REC)  # a bind copies its source's flags
        os.close(fd)
        if m.get("readOnly"):
            _mount(None, m["target"], MS_REMOUNT | MS_BIND | MS_RDONLY)
    for path, fd in image.items():  # image content a volume now hides: bound back where it was
        if any(path.startswith(t.rstrip("/") + "/") for t in targets):
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, MS_BIND | MS_REC)
        os.close(fd)
    if spec.get("readOnlyRoot"):
        _mount(None, "/", MS_REMOUNT | MS_BIND | MS_RDONLY)
    if spec.get("hostname"):
        name = spec["hostname"].encode()[:63]
        _check(libc.sethostname(name, len(name)), "sethostname")


def join(pid: int) -> None:
    """Enter the namespaces of a running container process."""
    for kind, flag in (("net", CLONE_NEWNET), ("uts", CLONE_NEWUTS), ("mnt", CLONE_NEWNS)):
        _setns(f"/proc/{pid}/ns/{kind}", flag)


def become(spec: dict) -> None:
    gid, uid = spec.get("gid"), spec.get("uid")
    if gid is not None or uid is not None:
        groups = [g for g in spec.get("groups", []) if g is not None]
        os.setgroups(groups)
        os.setgid(gid if gid is not None else (uid or 0))
        if uid is not None:
            os.setuid(uid)
    os.chdir(spec.get("cwd") or "/")


def main(argv: list[str]) -> int:
    with open(argv[0]) as f:
        spec = json.load(f)
    try:
        if spec.get("join"):
            join(int(spec["join"]))
        else:
            enter(spec)
        become(spec)
        os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
    except OSError as exc:
        print(f"test node agent: cannot start container: {exc}", file=sys.stderr, flush=True)
        return 128
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
