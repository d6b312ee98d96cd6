"""OpenAI JSON → SubmitRequest parsing and validation (table tests), and response builders."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ltr_sidecar.errors import ErrorCode, SidecarError
from ltr_sidecar.sampling import SamplingParams
from ltr_sidecar.server.openai_schema import ResponseOptions, StreamEncoder, completion_body, parse_request
from ltr_sidecar.server.types import FinalResult, SchedulingInfo
from ltr_sidecar.server.validation import RequestLimits, validate_request

P = {"model": "m", "prompt": "hello"}
C = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _parse(body: Any, chat: bool = False, **kw: Any):
    """The HTTP input path: wire parsing, then the shared request validation (as the core runs it)."""
    req, opts = parse_request(body, chat=chat, request_id="rid", **kw)
    validate_request(req, RequestLimits(max_tokens_limit=4096, priority_bands=(0, 1, 2)))
    return req, opts


@pytest.mark.parametrize(
    ("body", "chat", "fragment"),
    [
        ([1, 2], False, "JSON object"),
        ({"model": "m"}, False, "'prompt' is required"),
        ({**P, "prompt": ""}, False, "prompt must be a non-empty string"),
        ({**P, "prompt": "   "}, False, "prompt must be a non-empty string"),
        ({**P, "prompt": ["a", "b"]}, False, "batched prompts (2)"),
        ({**P, "prompt": [1, 2, 3]}, False, "token-id prompts"),
        ({**P, "prompt": 5}, False, "must be a string"),
        ({**P, "messages": []}, False, "use /v1/chat/completions"),
        ({**P, "max_tokens": 0}, False, "max_tokens must be an integer in [1, 4096]"),
        ({**P, "max_tokens": -3}, False, "max_tokens must be an integer in [1, 4096]"),
        ({**P, "max_tokens": 1.5}, False, "'max_tokens' must be an integer"),
        ({**P, "max_tokens": True}, False, "'max_tokens' must be an integer"),
        ({**P, "max_tokens": 5000}, False, "in [1, 4096]"),
        ({**P, "max_tokens": 5, "max_completion_tokens": 6}, False, "disagree"),
        ({**P, "temperature": -1}, False, "'temperature' must be >= 0"),
        ({**P, "temperature": "hot"}, False, "finite number"),
        ({**P, "top_p": 0}, False, "'top_p' must be > 0 and <= 1"),
        ({**P, "top_p": 1.5}, False, "'top_p'"),
        ({**P, "top_k": -2}, False, "'top_k' must be >= 0"),
        ({**P, "presence_penalty": 3}, False, "'presence_penalty'"),
        ({**P, "stop": [""]}, False, "'stop'"),
        ({**P, "stop": 7}, False, "'stop'"),
        ({**P, "stop": ["x"] * 17}, False, "at most 16"),
        ({**P, "seed": "abc"}, False, "'seed' must be an integer"),
        ({**P, "stream": "yes"}, False, "'stream' must be a boolean"),
        ({**P, "stream_options": {"include_usage": True}}, False, "only allowed when 'stream' is true"),
        ({**P, "stream": True, "stream_options": []}, False, "'stream_options' must be an object"),
        ({**P, "n": 2}, False, "'n' is not supported"),
        ({**P, "best_of": 3}, False, "'best_of' is not supported"),
        ({**P, "echo": True}, False, "'echo' is not supported"),
        ({**P, "logprobs": 5}, False, "'logprobs' is not supported"),
        ({**P, "suffix": "tail"}, False, "'suffix' is not supported"),
        ({**P, "priority": "high"}, False, "'priority' must be an integer"),
        ({**P, "ignore_eos": 1}, False, "'ignore_eos' must be a boolean"),
        ({**P, "expected_output_tokens": -1}, False, "expected_output_tokens must be an integer >= 0"),
        ({**P, "timeout_s": 0}, False, "'timeout_s' must be > 0"),
        ({**P, "model": 3}, False, "'model' must be a string"),
        ({"model": "m"}, True, "'messages' is required"),
        ({**C, "messages": []}, True, "non-empty list"),
        ({**C, "messages": "hi"}, True, "non-empty list"),
        ({**C, "messages": ["hi"]}, True, "messages[0] must be an object"),
        ({**C, "messages": [{"role": "wizard", "content": "x"}]}, True, "messages[0].role must be one of"),
        ({**C, "messages": [{"role": "user"}]}, True, "messages[0].content is required"),
        ({**C, "messages": [{"role": "user", "content": 4}]}, True, "string or a list of text parts"),
        (
            {**C, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            True,
            "only text parts are supported, got 'image_url'",
        ),
        ({**C, "messages": [{"role": "user", "content": "  "}]}, True, "hold no text"),
        (
            {**C, "messages": [{"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}]},
            True,
            "tool calls are not supported",
        ),
        ({**C, "tools": [{"type": "function"}]}, True, "'tools' is not supported"),
        ({**C, "response_format": {"type": "json_object"}}, True, "'response_format'"),
        ({**C, "prompt": "x"}, True, "takes 'messages', not 'prompt'"),
    ],
)
def test_invalid_requests_name_the_field(body: Any, chat: bool, fragment: str) -> None:
    with pytest.raises(SidecarError) as err:
        _parse(body, chat, max_tokens_limit=4096)
    assert err.value.code is ErrorCode.INVALID_ARGUMENT
    assert err.value.code.http_status == 400
    assert fragment in err.value.message


def test_completion_request_maps_every_field() -> None:
    req, opts = _parse(
        {
            "model": "m",
            "prompt": ["one prompt"],
            "max_tokens": 32,
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": 5,
            "stop": "\n",
            "seed": 11,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "stream": True,
            "stream_options": {"include_usage": True},
            "priority": 2,
            "ignore_eos": True,
            "expected_output_tokens": 30,
            "no_trace": True,
            "timeout_s": 2.5,
            "user": "ignored",
            "n": 1,
            "logprobs": None,
        },
        now=1000.0,
    )
    assert req.request_id == "rid" and req.prompt == "one prompt" and req.messages is None
    assert req.max_tokens == 32 and req.priority == 2 and req.expected_output_tokens == 30
    assert req.model == "m" and req.no_trace and req.deadline == 1002.5
    assert req.sampling == SamplingParams(
        temperature=0.7,
        top_p=0.9,
        top_k=5,
        stop=("\n",),
        seed=11,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        ignore_eos=True,
    )
    assert opts == ResponseOptions(chat=False, stream=True, include_usage=True, model="m")


def test_defaults_and_chat_content_parts() -> None:
    req, opts = _parse({"prompt": "x"})
    assert (
        req.max_tokens == 16
        and req.sampling == SamplingParams()
        and req.priority == 0
        and req.deadline is None
    )
    assert req.model is None and not opts.stream and not opts.include_usage
    req, _ = _parse(
        {
            **C,
            "max_completion_tokens": 9,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            ],
        },
        chat=True,
    )
    assert req.max_tokens == 9
    assert req.messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "ab"}]
    assert req.rank_text() == "system: be brief\nuser: ab"
    req, _ = _parse(C, chat=True, max_tokens_limit=300)
    assert req.max_tokens == 300  # chat without max_tokens: up to the limit (OpenAI: up to context)
    req, _ = _parse(C, chat=True, default_max_tokens=64, max_tokens_limit=300)
    assert req.max_tokens == 64


def _final(reason: str = "length", predicted: float | None = None) -> FinalResult:
    info = SchedulingInfo(
        score=0.5,
        rank_at_arrival=3,
        queue_wait_s=0.25,
        promoted=True,
        policy="ltr",
        predictor_version="v2",
        priority=1,
        predicted_output_tokens=predicted,
    )
    return FinalResult(
        finish_reason=reason, prompt_tokens=4, completion_tokens=6, scheduling=info, ttft_s=0.3, total_s=0.9
    )


def test_completion_bodies_carry_ltr_and_usage() -> None:
    for chat in (False, True):
        body = completion_body(ResponseOptions(chat, False, False, "m"), "rid", 123, "out", _final())
        assert body["object"] == ("chat.completion" if chat else "text_completion")
        assert body["id"] == ("chatcmpl-rid" if chat else "cmpl-rid")
        choice = body["choices"][0]
        assert (choice["message"]["content"] if chat else choice["text"]) == "out"
        assert choice["finish_reason"] == "length"
        assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
        assert body["ltr"] == {
            "score": 0.5,
            "rank_at_arrival": 3,
            "queue_wait_s": 0.25,
            "promoted": True,
            "policy": "ltr",
            "predictor_version": "v2",
            "priority": 1,
            "predicted_output_tokens": None,  # uncalibrated predictor: unknown
            "ttft_s": 0.3,
            "total_s": 0.9,
        }
    body = completion_body(
        ResponseOptions(True, False, False, "m"), "rid", 123, "out", _final(predicted=87.26)
    )
    assert body["ltr"]["predicted_output_tokens"] == 87.3


def _frames(data: bytes) -> list[Any]:
    out = []
    for block in data.decode().split("\n\n"):
        if block:
            assert block.startswith("data: ")
            payload = block[len("data: ") :]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_stream_encoder_frames_are_valid_json() -> None:
    enc = StreamEncoder(ResponseOptions(chat=True, stream=True, include_usage=True, model="m"), "rid", 5)
    data = enc.start() + enc.chunk('he said "hi"\n') + enc.chunk("é") + enc.final(_final("stop", 40.0))
    frames = _frames(data)
    assert frames[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert frames[1]["choices"][0]["delta"]["content"] == 'he said "hi"\n'
    assert frames[2]["choices"][0]["delta"]["content"] == "é"
    assert frames[3]["choices"][0]["finish_reason"] == "stop" and frames[3]["ltr"]["rank_at_arrival"] == 3
    assert frames[3]["ltr"]["predicted_output_tokens"] == 40.0
    assert frames[4]["choices"] == [] and frames[4]["usage"]["total_tokens"] == 10
    assert frames[5] == "[DONE]"
    assert all(f["id"] == "chatcmpl-rid" and f["object"] == "chat.completion.chunk" for f in frames[:5])

    enc = StreamEncoder(ResponseOptions(chat=False, stream=True, include_usage=False, model="m"), "r", 5)
    frames = _frames(enc.start() + enc.chunk("a") + enc.final(_final()))
    assert [f if f == "[DONE]" else f["choices"][0]["text"] for f in frames] == ["a", "", "[DONE]"]
    err = _frames(enc.error(ErrorCode.UNAVAILABLE, "engine down"))
    assert err[0]["error"]["code"] == "unavailable" and err[1] == "[DONE]"
