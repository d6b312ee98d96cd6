"""Image resolution, the desired predictor version, the promotion gate and retrain results."""

from __future__ import annotations

import json

import pytest

from ltr_operator.config import OperatorConfig
from ltr_operator.reconcile import (
    desired_predictor,
    promotion_decision,
    resolve_images,
)
from ltr_operator.status import Problem, RetrainResult, parse_retrain_result
from tests.support.operator import retrain_result, spec


def test_resolve_images_and_desired_predictor() -> None:
    cfg = OperatorConfig(sidecar_image="sc", default_engine_images={"vllm": "vllm:1"})
    assert resolve_images(spec(), cfg) == ("vllm:1", "sc")
    problem = resolve_images(spec(model={"name": "m", "engine": "tgi"}), cfg)
    assert isinstance(problem, Problem) and problem.reason == "MissingModelImage"
    problem = resolve_images(spec(), OperatorConfig(default_engine_images={"vllm": "v"}))
    assert isinstance(problem, Problem) and problem.reason == "MissingSidecarImage"
    pinned = spec(predictor={"version": "v5", "store": {"size": "1Gi"}})
    assert desired_predictor(pinned, "v9") == ("v5", "Pinned")
    assert desired_predictor(spec(), "v9") == ("v9", "Promoted")
    assert desired_predictor(spec(), "") == ("", "Bundled")
    with pytest.raises(ValueError, match="unknown engines"):
        OperatorConfig(default_engine_images={"triton": "x"})


def test_promotion_gate() -> None:
    auto = spec(
        predictor={"store": {"size": "1Gi"}},
        retraining={"enabled": True, "autoPromote": True, "minKendallTau": 0.3},
    )
    assert promotion_decision(auto, retrain_result(), "v1")[0] is True
    assert promotion_decision(auto, retrain_result(candidate_kendall_tau=0.2), "v1") == (
        False,
        "candidate v2 tau 0.2 is below retraining.minKendallTau 0.3",
    )
    assert "does not beat" in promotion_decision(auto, retrain_result(candidate_kendall_tau=0.35), "v1")[1]
    assert promotion_decision(auto, retrain_result(candidate_kendall_tau=0.35), "")[0] is True  # cold start
    assert (
        promotion_decision(auto, retrain_result(status="insufficient_data", candidate=""), "v1")[0] is False
    )
    assert promotion_decision(auto, retrain_result(), "v2")[0] is False  # already promoted
    manual = spec(predictor={"store": {"size": "1Gi"}}, retraining={"enabled": True})
    assert "autoPromote is off" in promotion_decision(manual, retrain_result(), "v1")[1]
    pinned = spec(
        predictor={"version": "v1", "store": {"size": "1Gi"}},
        retraining={"enabled": True, "autoPromote": True},
    )
    assert "pins v1" in promotion_decision(pinned, retrain_result(), "")[1]


def test_parse_retrain_result() -> None:
    assert parse_retrain_result(None) is None
    ok = parse_retrain_result(
        json.dumps(
            {
                "status": "published",
                "candidate": "v4",
                "candidate_kendall_tau": 0.6,
                "current_kendall_tau": None,
                "samples": 900,
                "reason": "ok",
            }
        )
    )
    assert ok == RetrainResult("published", "v4", 0.6, None, 900, "ok")
    for bad in ("{", json.dumps({"status": "done"}), json.dumps({"status": "published"}), "[]"):
        problem = parse_retrain_result(bad)
        assert isinstance(problem, Problem) and problem.reason == "InvalidRetrainResult"
