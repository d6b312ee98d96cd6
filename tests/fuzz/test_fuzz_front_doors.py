"""The fuzz tier: thousands of generated requests against both front doors of the real sidecar (in front
of the scripted engine). Whatever a client sends, the answer is never a 5xx / INTERNAL / UNKNOWN caused
by its input, readiness never flips, and the queue drains to zero."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ltr.v1 import scheduler_pb2 as pb
from ltr.v1 import scheduler_pb2_grpc as pb_grpc
from ltr_sidecar.server.app import SidecarApp
from tests.support.sidecar import FakeEngine, TaggedPredictor, make_config

pytestmark = [pytest.mark.slow, pytest.mark.fuzz, pytest.mark.timeout(900)]

HTTP_EXAMPLES, GRPC_EXAMPLES = 2000, 1000
CLIENT_STATUSES = {200, 400, 404, 405, 408, 413, 429}
FIELDS = [
    "model",
    "prompt",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "presence_penalty",
    "frequency_penalty",
    "priority",
    "ignore_eos",
    "expected_output_tokens",
    "no_trace",
    "timeout_s",
    "n",
    "logprobs",
    "response_format",
    "tools",
    "user",
]


class SidecarThread:
    """The real sidecar on its own event loop in a thread, so hypothesis can drive it synchronously."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.engine = FakeEngine(token_delay_s=0.0, record=False)
        self.app: SidecarApp | None = None
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        url = await self.engine.start()
        config = make_config(
            url,
            max_concurrency=8,
            max_queue=64,
            max_prompt_bytes=8192,
            max_tokens_limit=64,
            priority_bands=[0, 1],
        )
        self.app = SidecarApp(config, predictor=TaggedPredictor())
        await self.app.start()
        self._stop = asyncio.Event()
        self.ready.set()
        await self._stop.wait()
        await self.app.stop(grace_s=5.0)
        await self.engine.stop()

    def __enter__(self) -> SidecarThread:
        self.thread.start()
        assert self.ready.wait(30), "sidecar did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)


@pytest.fixture(scope="module")
def sidecar() -> Iterator[SidecarThread]:
    with SidecarThread() as s:
        yield s
        app = s.app
        assert app is not None
        assert len(app.core.queue) == 0 and app.core.in_flight == 0, "the queue did not drain"


@pytest.fixture(scope="module")
def http(sidecar: SidecarThread) -> Iterator[httpx.Client]:
    assert sidecar.app is not None
    with httpx.Client(base_url=f"http://127.0.0.1:{sidecar.app.http_port}", timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def scheduler(sidecar: SidecarThread) -> Iterator[pb_grpc.SchedulerStub]:
    assert sidecar.app is not None
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.app.grpc_port}") as channel:
        yield pb_grpc.SchedulerStub(channel)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "system", "assistant", "bot", ""]),
            "content": st.text(max_size=60) | json_values,
        }
    ),
    max_size=4,
)
bodies = st.dictionaries(
    st.sampled_from(FIELDS),
    json_values | st.integers(0, 100) | st.text(max_size=200) | messages,
    max_size=8,
).map(lambda d: {"prompt": "hello", "max_tokens": 3, **d})


# Header values a client library can send at all: printable ASCII (the sidecar accepts a subset).
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=140)


@given(body=bodies | json_values, chat=st.booleans(), rid=st.none() | header_text.map(str.strip))
@settings(max_examples=HTTP_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_http_never_5xx(
    sidecar: SidecarThread, http: httpx.Client, body: Any, chat: bool, rid: str | None
) -> None:
    app = sidecar.app
    assert app is not None
    path = "/v1/chat/completions" if chat else "/v1/completions"
    headers = {"x-request-id": rid} if rid else {}
    try:
        data = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        data = repr(body).encode("utf-8", "surrogatepass")
    resp = http.post(path, content=data, headers=headers)
    assert resp.status_code in CLIENT_STATUSES, (resp.status_code, resp.text[:300])
    assert app.core.ready


texts = st.text(max_size=120)
sampling = st.builds(
    pb.SamplingParams,
    temperature=st.none() | st.floats(width=32),
    top_p=st.none() | st.floats(width=32),
    top_k=st.none() | st.integers(-(2**31), 2**31 - 1),
    seed=st.none() | st.integers(-(2**63), 2**63 - 1),
    stop=st.lists(st.text(max_size=300), max_size=20),
    ignore_eos=st.booleans(),
)
generate_requests = st.builds(
    pb.GenerateRequest,
    request_id=st.text(max_size=40),
    prompt=texts,
    max_tokens=st.integers(-(2**31), 2**31 - 1),
    priority=st.integers(-5, 5),
    sampling=st.none() | sampling,
    model=st.text(max_size=10),
) | st.builds(
    pb.GenerateRequest,
    chat=st.builds(
        pb.ChatMessages,
        messages=st.lists(
            st.builds(pb.ChatMessage, role=st.sampled_from(["user", "system", "bot", ""]), content=texts),
            max_size=4,
        ),
    ),
    max_tokens=st.integers(0, 100),
)


@given(request=generate_requests)
@settings(max_examples=GRPC_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_grpc_never_internal(sidecar: SidecarThread, request: pb.GenerateRequest) -> None:
    app = sidecar.app
    assert app is not None
    with grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        stub = pb_grpc.SchedulerStub(channel)
        try:
            msgs = list(stub.Generate(request, timeout=30))
            assert msgs and msgs[-1].HasField("final")
        except grpc.RpcError as err:
            assert err.code() in {
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.NOT_FOUND,
            }, (err.code(), err.details())
    assert app.core.ready
