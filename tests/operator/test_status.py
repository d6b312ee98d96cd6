"""Status: conditions from the Deployment, rollout states, predictor rollout, retrain results."""

from __future__ import annotations

from typing import Any

import pytest

from ltr_operator.podprobe import PodPredictor
from ltr_operator.status import Problem, compute_status, condition
from tests.support.operator import NOW, retrain_result


def _deployment(
    gen: int = 1,
    observed: int = 1,
    replicas: int = 2,
    ready: int = 2,
    updated: int = 2,
    conditions: list | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"generation": gen},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "conditions": conditions or [],
        },
    }


def _status(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "generation": 3,
        "replicas": 2,
        "problem": None,
        "deployment": _deployment(),
        "pods": [],
        "desired": "",
        "source": "Bundled",
        "selector": {"a": "b"},
        "retrain": None,
        "previous": {},
        "now": NOW,
        **kw,
    }
    return compute_status(**args)


def _conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {cd["type"]: (cd["status"], cd["reason"]) for cd in status["conditions"]}


def test_status_ready_when_rolled_out() -> None:
    st = _status()
    assert _conds(st) == {
        "Ready": ("True", "Serving"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
        "PredictorReady": ("Unknown", "NoPods"),
    }
    assert st["observedGeneration"] == 3 and st["selector"] == "a=b" and st["readyReplicas"] == 2
    assert all(cd["observedGeneration"] == 3 for cd in st["conditions"])


@pytest.mark.parametrize(
    ("deployment", "replicas", "ready", "progressing", "degraded"),
    [
        (None, 2, ("False", "Creating"), ("True", "Creating"), "False"),
        (_deployment(gen=2, observed=1), 2, ("False", "RollingOut"), ("True", "RollingOut"), "False"),
        (_deployment(ready=1), 2, ("False", "RollingOut"), ("True", "RollingOut"), "False"),
        (_deployment(replicas=3), 2, ("False", "RollingOut"), ("True", "RollingOut"), "False"),
        (
            _deployment(
                conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "x"}]
            ),
            2,
            ("False", "RolloutStuck"),
            ("False", "RolloutStuck"),
            "True",
        ),
        (
            _deployment(conditions=[{"type": "ReplicaFailure", "status": "True", "message": "quota"}]),
            2,
            ("False", "ReplicaFailure"),
            ("False", "ReplicaFailure"),
            "True",
        ),
        (
            _deployment(replicas=0, ready=0, updated=0),
            0,
            ("False", "ScaledToZero"),
            ("False", "ScaledToZero"),
            "False",
        ),
    ],
)
def test_status_rollout_states(
    deployment: Any, replicas: int, ready: tuple, progressing: tuple, degraded: str
) -> None:
    conds = _conds(_status(deployment=deployment, replicas=replicas))
    assert (
        conds["Ready"] == ready and conds["Progressing"] == progressing and conds["Degraded"][0] == degraded
    )


def test_status_problem_and_predictor_rollout() -> None:
    st = _status(problem=Problem("InvalidSpec", "spec.x: bad"))
    assert _conds(st)["Ready"] == ("False", "InvalidSpec") and _conds(st)["Degraded"] == (
        "True",
        "InvalidSpec",
    )
    pods = [PodPredictor("p0", "v2", 0.5, 30), PodPredictor("p1", "v1"), PodPredictor("p2", error="timeout")]
    st = _status(pods=pods, desired="v2", source="Pinned", previous={"predictor": {"current": "v1"}})
    assert _conds(st)["PredictorReady"] == ("False", "PredictorRollingOut")
    assert _conds(st)["Ready"] == ("False", "PredictorRollingOut")
    assert st["predictor"]["current"] == "v1" and st["predictor"]["podsOnCurrent"] == 1
    assert st["predictor"]["pods"][2]["error"] == "timeout"
    st = _status(pods=[PodPredictor("p0", ""), PodPredictor("p1", "")])
    assert _conds(st)["PredictorReady"] == ("True", "BundledPredictor")
    st = _status(pods=[PodPredictor("p0", error="down")])
    assert _conds(st)["PredictorReady"] == ("Unknown", "SidecarsUnreachable")
    assert _conds(st)["Ready"][0] == "True"  # unreachable sidecars do not block Ready (e.g. NetworkPolicy)


def test_status_records_retrain_results() -> None:
    st = _status(retrain=retrain_result(time="2026-01-01T01:00:00Z", samples=500, reason="better"))
    pred = st["predictor"]
    assert (
        pred["candidate"] == "v2" and pred["candidateKendallTau"] == 0.5 and pred["lastRetrainSamples"] == 500
    )
    assert pred["lastRetrainResult"] == "published" and pred["lastRetrainTime"] == "2026-01-01T01:00:00Z"
    promoted = _status(retrain=retrain_result(), desired="v2", source="Promoted")
    assert "candidate" not in promoted["predictor"]
    invalid = _status(retrain=Problem("InvalidRetrainResult", "bad json"))
    assert invalid["predictor"]["lastRetrainResult"] == "invalid"


def test_condition_keeps_transition_time_while_status_holds() -> None:
    first = condition("Ready", True, "Serving", "ok", 1, NOW, [])
    same = condition("Ready", True, "Serving", "ok", 2, "2026-02-02T00:00:00Z", [first])
    flipped = condition("Ready", False, "RollingOut", "x", 2, "2026-02-02T00:00:00Z", [first])
    assert same["lastTransitionTime"] == NOW and flipped["lastTransitionTime"] == "2026-02-02T00:00:00Z"
