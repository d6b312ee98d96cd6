"""The one request validation both surfaces run at the edge, and the typed sampling parameters."""

from __future__ import annotations

from typing import Any

import pytest

from ltr_sidecar.errors import ErrorCode, SidecarError
from ltr_sidecar.sampling import KEYS, MAX_STOP_SEQUENCES, SamplingParams
from ltr_sidecar.server.types import SubmitRequest
from ltr_sidecar.server.validation import RequestLimits, validate_request

LIMITS = RequestLimits(max_tokens_limit=4096, priority_bands=(0, 1))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": -3}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": 10**9}, "max_tokens"),
        ({"prompt": "hi", "priority": 7}, "band"),
        ({"prompt": None, "messages": []}, "chat"),
        ({"prompt": None, "messages": [{"role": "user"}]}, "content"),
        ({"prompt": None, "messages": [{"role": "wizard", "content": "hi"}]}, "role"),
        ({"prompt": None}, "exactly one"),
        ({"prompt": "hi", "expected_output_tokens": -1}, "expected_output_tokens"),
        ({"prompt": "hi", "request_id": "a b"}, "request_id"),
        ({"prompt": "hi", "request_id": "x" * 129}, "request_id"),
        ({"prompt": "hi", "deadline": float("nan")}, "deadline"),
    ],
)
def test_invalid_requests_are_invalid_argument_naming_the_field(kwargs: dict[str, Any], needle: str) -> None:
    args = {"request_id": "", "max_tokens": 4, **kwargs}
    with pytest.raises(SidecarError) as err:
        validate_request(SubmitRequest(**args), LIMITS)
    assert err.value.code is ErrorCode.INVALID_ARGUMENT
    assert needle in err.value.message


def test_valid_requests_pass() -> None:
    validate_request(SubmitRequest(request_id="r-1", max_tokens=4096, prompt="hi", priority=1), LIMITS)
    validate_request(
        SubmitRequest(request_id="", max_tokens=1, messages=[{"role": "user", "content": "x"}]), LIMITS
    )


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"temperature": -1}, "'sampling.temperature' must be >= 0 and <= 100"),
        ({"temperature": float("inf")}, "finite number"),
        ({"top_p": 0}, "'sampling.top_p' must be > 0 and <= 1"),
        ({"top_k": -1}, "top_k"),
        ({"seed": 2**63}, "'sampling.seed' must be >= -9223372036854775808 and <= 9223372036854775807"),
        ({"seed": 1.5}, "an integer"),
        ({"bogus": 1}, "bogus"),
        ({"stop": ["x"] * (MAX_STOP_SEQUENCES + 1)}, "at most 16"),
        ({"stop": ["x" * 257]}, "at most 256 characters"),
        ({"stop": [""]}, "stop"),
        ({"ignore_eos": 1}, "'sampling.ignore_eos' must be a boolean"),
    ],
)
def test_sampling_bounds_are_one_table(values: dict[str, Any], needle: str) -> None:
    with pytest.raises(SidecarError) as err:
        SamplingParams.parse(values, prefix="sampling.")
    assert err.value.code is ErrorCode.INVALID_ARGUMENT
    assert needle in err.value.message


def test_sampling_round_trip_and_engine_fields() -> None:
    p = SamplingParams.parse(
        {
            "temperature": 0,
            "top_p": 1,
            "top_k": 5,
            "seed": -3,
            "stop": "\n",
            "ignore_eos": True,
            "presence_penalty": None,
        }
    )
    assert p == SamplingParams(temperature=0.0, top_p=1.0, top_k=5, seed=-3, stop=("\n",), ignore_eos=True)
    assert p.standard_fields() == {"temperature": 0.0, "top_p": 1.0, "seed": -3, "stop": ["\n"]}
    assert p.vendor_fields() == {"top_k": 5, "ignore_eos": True}
    assert set(KEYS) == {
        "temperature",
        "top_p",
        "top_k",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "stop",
        "ignore_eos",
    }
