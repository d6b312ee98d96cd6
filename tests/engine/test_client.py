"""Engine client pure helpers: request bodies, SSE parsing, the engines' waiting-queue gauges."""

from __future__ import annotations

import json

import pytest

from ltr_sidecar.engine.client import EngineRequest, build_body, parse_event, parse_waiting
from ltr_sidecar.sampling import SamplingParams


def test_body_passes_sampling_and_vendor_fields_on_request() -> None:
    req = EngineRequest(
        model="m",
        max_tokens=7,
        prompt="hi",
        priority=3,
        sampling=SamplingParams(temperature=0.0, top_p=0.9, top_k=20, stop=("\n",), seed=1, ignore_eos=True),
    )
    body = build_body(req)
    assert body == {
        "model": "m",
        "max_tokens": 7,
        "prompt": "hi",
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.0,
        "top_p": 0.9,
        "stop": ["\n"],
        "seed": 1,
        "top_k": 20,
        "ignore_eos": True,
        "priority": 3,
    }
    plain = build_body(req, vendor_fields=False)
    assert not {"top_k", "ignore_eos", "priority"} & set(plain)
    chat = build_body(EngineRequest(model="", max_tokens=1, messages=[{"role": "user", "content": "x"}]))
    assert "model" not in chat and chat["messages"][0]["content"] == "x" and "prompt" not in chat
    as_chat = build_body(EngineRequest(model="m", max_tokens=1, prompt="p"), chat=True)
    assert as_chat["messages"] == [{"role": "user", "content": "p"}] and "prompt" not in as_chat


def test_parse_events() -> None:
    assert parse_event(json.dumps({"choices": [{"text": "ab"}]}), chat=False) == ("ab", None, None, "")
    assert parse_event(json.dumps({"choices": [{"delta": {"role": "assistant"}}]}), chat=True)[0] == ""
    fin = parse_event(
        json.dumps(
            {
                "choices": [{"delta": {}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 2, "completion_tokens": 9},
            }
        ),
        chat=True,
    )
    assert fin[1] == "length" and fin[2]["completion_tokens"] == 9
    assert parse_event(json.dumps({"choices": [], "usage": {"completion_tokens": 3}}), chat=False)[2] == {
        "completion_tokens": 3
    }
    assert parse_event('{"error": "boom"}', chat=False)[3] == "boom"
    assert parse_event('{"error": {"message": "bad"}}', chat=False)[3] == "bad"
    with pytest.raises(ValueError):
        parse_event("[1]", chat=False)


def test_parse_waiting_gauges() -> None:
    text = (
        "# HELP vllm:num_requests_waiting x\n# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{model_name="a"} 2.0\nvllm:num_requests_waiting{model_name="b"} 1.0\n'
        'vllm:num_requests_running{model_name="a"} 7.0\n'
    )
    assert parse_waiting(text) == 3.0
    assert parse_waiting("tgi_queue_size 4\n") == 4.0
    assert parse_waiting("other_metric 1\n") is None
