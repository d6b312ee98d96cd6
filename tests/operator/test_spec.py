"""Spec parsing: every problem reported with its field path."""

from __future__ import annotations

import pytest

from ltr_operator.spec import SpecError, parse_spec


def test_spec_errors_list_every_problem_with_its_path() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({"model": {"port": "x", "engine": "triton"}, "replicas": True, "scheduler": [1]})
    text = str(err.value)
    for needle in (
        "spec.model.name: required",
        "spec.model.port: expected an integer",
        "spec.model.engine: 'triton' is not one of",
        "spec.replicas: expected an integer",
        "spec.scheduler: expected an object",
    ):
        assert needle in text
    with pytest.raises(SpecError, match="expected an object"):
        parse_spec("not a mapping")
