"""Pod networking for the node agent: one network namespace per pod, joined to the host by a veth pair.

The pod side is `eth0` with the pod IP (/32) and a default route to 169.254.1.1, an address every
host-side veth carries (as Calico does), so the host reaches each pod IP through a /32 host route and
every pod can bind 0.0.0.0:PORT like a real pod. Inside each pod, `lo` also carries the `kubernetes`
Service IP (10.96.0.1), which the agent forwards to the API server, and the cluster DNS IP (10.96.0.10),
forwarded to this machine's resolver. Names are prefixed with the
cluster id so two clusters on one machine do not collide, and `cleanup_cluster` removes leftovers.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

HOST_GW = "169.254.1.1"
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.Lock()


class NetError(RuntimeError):
    pass


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def pick_subnet() -> ipaddress.IPv4Network:
    """A 10.244.N.0/24 that no route on this host uses yet (one per cluster)."""
    used = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True).stdout
    for n in list(range(0, 256)):
        net = ipaddress.IPv4Network(f"10.244.{n}.0/24")
        if f"10.244.{n}." not in used:
            return net
    raise NetError("no free 10.244.N.0/24 subnet for pod IPs")


def names(cluster_id: str, index: int) -> tuple[str, str]:
    """(netns name, host veth name ≤ 15 chars) of pod slot `index`."""
    return f"ltr-{cluster_id}-{index}", f"lv{cluster_id}{index:x}"[:15]


def create(cluster_id: str, index: int, pod_ip: str, service_ips: list[str]) -> str:
    """Create the pod network of slot `index`; returns the netns name."""
    ns, veth = names(cluster_id, index)
    delete(cluster_id, index)  # a leftover from a crashed run
    _ip("netns", "add", ns)
    _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _ip("addr", "add", f"{HOST_GW}/32", "dev", veth)
    _ip("link", "set", veth, "up")
    _ip("route", "add", f"{pod_ip}/32", "dev", veth, "src", HOST_GW)
    # pod-to-pod traffic is routed by the host; forwarding only on this veth (not the host's uplinks)
    Path(f"/proc/sys/net/ipv4/conf/{veth}/forwarding").write_text("1")
    _ip("-n", ns, "link", "set", "lo", "up")
    for service_ip in service_ips:  # the agent serves these inside the pod (API server, DNS)
        _ip("-n", ns, "addr", "add", f"{service_ip}/32", "dev", "lo")
    _ip("-n", ns, "addr", "add", f"{pod_ip}/32", "dev", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "up")
    _ip("-n", ns, "route", "add", f"{HOST_GW}/32", "dev", "eth0", "scope", "link")
    _ip("-n", ns, "route", "add", "default", "via", HOST_GW, "dev", "eth0")
    return ns


def delete(cluster_id: str, index: int) -> None:
    ns, veth = names(cluster_id, index)
    subprocess.run(["ip", "link", "del", veth], capture_output=True)
    if (NETNS_DIR / ns).exists():
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def cleanup_cluster(cluster_id: str) -> None:
    """Remove every netns and veth of `cluster_id` (after a crash too)."""
    for entry in NETNS_DIR.glob(f"ltr-{cluster_id}-*") if NETNS_DIR.is_dir() else []:
        subprocess.run(["ip", "netns", "del", entry.name], capture_output=True)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(f"lv{cluster_id}"):
            subprocess.run(["ip", "link", "del", name], capture_output=True)


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run the block with this thread in netns `ns` (sockets created there stay there)."""
    with _lock:
        host = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(NETNS_DIR / ns, os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                raise NetError(f"setns {ns}: {os.strerror(ctypes.get_errno())}")
            try:
                yield
            finally:
                if _libc.setns(host, CLONE_NEWNET) != 0:
                    raise NetError(f"setns back to the host: {os.strerror(ctypes.get_errno())}")
        finally:
            os.close(target)
            os.close(host)


def udp_in(ns: str, host: str, port: int) -> socket.socket:
    """A bound UDP socket inside netns `ns`."""
    with inside(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def listen_in(ns: str, host: str, port: int) -> socket.socket:
    """A listening TCP socket bound to host:port inside netns `ns` (usable from any thread)."""
    with inside(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
