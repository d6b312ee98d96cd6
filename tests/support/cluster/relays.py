"""Byte and datagram relays of the test node agent: TCP forwarders (pod port -> agent-side address)
and the pods' cluster DNS relayed to this machine's resolver."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def forward(sock: socket.socket, host: str, port: int) -> asyncio.Server:
    """Accept on `sock` (any netns) and relay each connection to host:port (the agent's netns)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return await asyncio.start_server(handle, sock=sock)


class _DnsRelay(asyncio.DatagramProtocol):
    """Relays each query received in a pod to `upstream` (from the agent's netns) and back."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        asyncio.get_running_loop().create_task(self._relay(data, addr))

    async def _relay(self, data: bytes, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[bytes] = loop.create_future()

        class _Up(asyncio.DatagramProtocol):
            def datagram_received(self, answer: bytes, _: tuple[str, int]) -> None:
                if not reply.done():
                    reply.set_result(answer)

        transport, _ = await loop.create_datagram_endpoint(_Up, remote_addr=self.upstream)
        try:
            transport.sendto(data)
            answer = await asyncio.wait_for(reply, 5.0)
            if self.transport is not None:
                self.transport.sendto(answer, addr)
        except (TimeoutError, OSError):
            pass
        finally:
            transport.close()


async def relay_dns(sock: socket.socket, upstream: tuple[str, int]) -> asyncio.DatagramTransport:
    """Serve DNS on `sock` (a pod's cluster DNS address) by relaying to this machine's resolver."""
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: _DnsRelay(upstream), sock=sock
    )
    return transport


def host_resolver() -> tuple[str, int]:
    """The first nameserver of this machine's /etc/resolv.conf."""
    with contextlib.suppress(OSError):
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver" and ":" not in parts[1]:
                return parts[1], 53
    return "127.0.0.53", 53
