"""Small JSON clients for the harness (sync, http.client) and the node agent (async, aiohttp).

Both authenticate with a client certificate of the test PKI (admin or a node's) and verify the API
server against the test CA. They speak plain REST paths: the harness is test infrastructure and
must not depend on the operator's own Kubernetes client.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"{status}: {message}")
        self.status, self.body = status, body


@dataclass(frozen=True)
class Identity:
    """Where the API server is and who we are to it (PEM files of the test PKI)."""

    server: str  # https://127.0.0.1:PORT
    ca: Path
    cert: Path
    key: Path

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


def _query(params: dict[str, Any] | None) -> str:
    return "?" + urllib.parse.urlencode(params) if params else ""


class Api:
    """Synchronous client: one connection per call (the harness makes few calls)."""

    def __init__(self, identity: Identity, timeout_s: float = 30.0) -> None:
        self.identity, self.timeout_s = identity, timeout_s
        self._ctx = identity.ssl_context()
        url = urllib.parse.urlsplit(identity.server)
        self._host, self._port = url.hostname or "127.0.0.1", url.port or 443

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, Any] | None = None,
        ok404: bool = False,
    ) -> Any:
        conn = http.client.HTTPSConnection(self._host, self._port, context=self._ctx, timeout=self.timeout_s)
        try:
            data = None if body is None else (body if isinstance(body, str | bytes) else json.dumps(body))
            headers = {"Content-Type": content_type, "Accept": "application/json"}
            conn.request(method, path + _query(params), body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = raw.decode(errors="replace")
        if resp.status == 404 and ok404:
            return None
        if resp.status >= 400:
            raise ApiError(resp.status, decoded)
        return decoded

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None, ok404=True)

    def create(self, path: str, obj: dict[str, Any]) -> Any:
        return self.request("POST", path, obj)

    def ensure(self, path: str, obj: dict[str, Any]) -> Any:
        """Create `obj` in collection `path`; an existing object of that name is left as is."""
        try:
            return self.create(path, obj)
        except ApiError as exc:
            if exc.status != 409:
                raise
            return self.get(f"{path}/{obj['metadata']['name']}")


class AsyncApi:
    """Async client for the node agent; open inside its event loop (`async with`)."""

    def __init__(self, identity: Identity, timeout_s: float = 30.0) -> None:
        self.identity = identity
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncApi:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.identity.ssl_context(), limit=32),
            headers={"User-Agent": "ltr-test-node-agent"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("AsyncApi is not open")
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, Any] | None = None,
        ok404: bool = False,
    ) -> Any:
        data = None if body is None else json.dumps(body)
        async with self.session.request(
            method,
            self.identity.server + path,
            data=data,
            params=params,
            headers={"Content-Type": content_type},
            timeout=self._timeout,
        ) as resp:
            raw = await resp.read()
            try:
                decoded = json.loads(raw) if raw else {}
            except ValueError:
                decoded = raw.decode(errors="replace")
            if resp.status == 404 and ok404:
                return None
            if resp.status >= 400:
                raise ApiError(resp.status, decoded)
            return decoded

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params or None, ok404=True)

    async def watch(self, path: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Events of one watch request (ends when the server closes it; ERROR events are yielded)."""
        query = {**params, "watch": "true", "allowWatchBookmarks": "true"}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=float(params.get("timeoutSeconds", 300)) + 30)
        async with self.session.get(self.identity.server + path, params=query, timeout=timeout) as resp:
            if resp.status >= 400:
                raise ApiError(resp.status, await resp.text())
            async for line in resp.content:
                if line.strip():
                    yield json.loads(line)


async def list_and_watch(api: AsyncApi, path: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """ADDED/MODIFIED/DELETED events forever: a list (as synthetic ADDED events), then watches; relists
    on 410 Gone. A `SYNC` event with the listed names follows each list so callers can drop vanished ones."""
    while True:
        try:
            listing = await api.request("GET", path, params=params)
            version = listing["metadata"]["resourceVersion"]
            for item in listing.get("items", []):
                yield {"type": "ADDED", "object": item}
            yield {"type": "SYNC", "object": {"names": [i["metadata"]["name"] for i in listing["items"]]}}
            while True:
                async for event in api.watch(
                    path, {**params, "resourceVersion": version, "timeoutSeconds": 240}
                ):
                    if event["type"] == "ERROR":
                        raise ApiError(int(event["object"].get("code", 500)), event["object"])
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        yield event
        except ApiError as exc:
            if exc.status != 410:
                await asyncio.sleep(1.0)
        except (TimeoutError, aiohttp.ClientError, OSError):
            await asyncio.sleep(1.0)
