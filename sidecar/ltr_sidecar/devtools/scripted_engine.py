"""A scripted OpenAI-compatible streaming engine: a deterministic double for tests and overhead benchmarks.

It speaks the same SSE protocol as vLLM / `transformers serve` (`/v1/completions`,
`/v1/chat/completions`, `/v1/models`, `/health`) but generates no text: it streams `max_tokens`
chunks of "x", `token_delay_s` apart (0 = as fast as possible), then a final chunk with
`finish_reason` "length" and `usage`. It records the order requests arrived in (= the sidecar's
admission order), how many run at once, and which streams the client aborted. Knobs: `gate` (hold
every request until set), `fail_after` (an error event after N tokens), `reject_fields` (answer 422
"Unexpected fields", as `transformers serve` does for `ignore_eos`), `poison` (a prompt containing it
gets HTTP 500, as a real engine answers input it chokes on).

Run standalone: `python -m ltr_sidecar.devtools.scripted_engine --port 8000 [--token-delay-ms 0]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MODEL_ID = "scripted-model"


@dataclass
class ScriptedEngine:
    """See the module doc. `start()` binds 127.0.0.1 (port 0 = any free port) and returns the URL."""

    token_delay_s: float = 0.002
    fail_after: int | None = None
    reject_fields: tuple[str, ...] = ()
    poison: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    running: int = 0
    max_running: int = 0
    aborted: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None
    record: bool = True
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{bound}"
        return self.url

    async def stop(self) -> None:
        if self.gate is not None:
            self.gate.set()  # release held handlers so the server can shut down
        if self._runner:
            await self._runner.cleanup()

    def prompts(self) -> list[str]:
        """Prompts (or JSON of chat messages) in the order the engine received them."""
        return [b.get("prompt") or json.dumps(b.get("messages")) for b in self.received]

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        bad = [f for f in self.reject_fields if f in body]
        if bad:
            return web.json_response({"detail": f"Unexpected fields in the request: {set(bad)}"}, status=422)
        if self.poison and self.poison in json.dumps(body):
            return web.json_response({"error": "internal error at /opt/engine/worker.py"}, status=500)
        if self.record:
            self.received.append(body)
        chat = "messages" in body
        rid = body.get("prompt") or "chat"
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        delta = {"delta": {"content": "x"}} if chat else {"text": "x"}
        chunk = f"data: {json.dumps({'choices': [{'index': 0, **delta}]})}\n\n".encode()
        try:
            if self.gate is not None:
                await self.gate.wait()
            n = int(body["max_tokens"])
            for i in range(n):
                if self.fail_after is not None and i == self.fail_after:
                    await resp.write(b'data: {"error": "engine exploded"}\n\n')
                    return resp
                if self.token_delay_s > 0:
                    await asyncio.sleep(self.token_delay_s)
                await resp.write(chunk)
            final = {
                "choices": [{"index": 0, "text": "", "finish_reason": "length"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": n + 3},
            }
            await resp.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
            if self.record:
                self.completed.append(rid)
        except (ConnectionResetError, asyncio.CancelledError):
            self.aborted.append(rid)
            raise
        finally:
            self.running -= 1
        return resp


async def _serve(port: int, token_delay_s: float) -> None:
    engine = ScriptedEngine(token_delay_s=token_delay_s, record=False)
    print(await engine.start(port), flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Scripted OpenAI-compatible streaming engine (tests, benchmark).")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token-delay-ms", type=float, default=0.0)
    args = p.parse_args(argv)
    asyncio.run(_serve(args.port, args.token_delay_ms / 1000.0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
