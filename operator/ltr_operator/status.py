"""Pure status computation: conditions (metav1.Condition), replica counts, predictor state.

Ready is True only when the Deployment has rolled out the pod template of the current generation
and all replicas are ready, nothing is Degraded, and no reachable sidecar serves a wrong predictor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ltr_operator import constants as c
from ltr_operator.podprobe import PodPredictor


@dataclass(frozen=True)
class Problem:
    """Why an LTRServing cannot work as specified (→ Degraded)."""

    reason: str  # CamelCase
    message: str  # what to fix


@dataclass(frozen=True)
class RetrainResult:
    """The retrain job's report (ConfigMap <name>-retrain-result, key result.json)."""

    status: str  # published | insufficient_data | rejected
    candidate: str = ""
    candidate_kendall_tau: float | None = None
    current_kendall_tau: float | None = None
    samples: int = 0
    reason: str = ""
    time: str = ""


def parse_retrain_result(text: str | None) -> RetrainResult | Problem | None:
    """The report's JSON as a RetrainResult, a Problem when malformed, None when absent."""
    if not text:
        return None
    try:
        data = json.loads(text)
        status = data["status"]
        if status not in ("published", "insufficient_data", "rejected"):
            raise ValueError(f"unknown status {status!r}")
        if status == "published" and not data.get("candidate"):
            raise ValueError("published without a candidate version")

        def tau(key: str) -> float | None:
            return None if data.get(key) is None else float(data[key])

        return RetrainResult(
            status=status,
            candidate=str(data.get("candidate") or ""),
            candidate_kendall_tau=tau("candidate_kendall_tau"),
            current_kendall_tau=tau("current_kendall_tau"),
            samples=int(data.get("samples") or 0),
            reason=str(data.get("reason") or ""),
            time=str(data.get("time") or ""),
        )
    except (ValueError, KeyError, TypeError) as exc:
        return Problem(
            "InvalidRetrainResult",
            f"ConfigMap key {c.RETRAIN_RESULT_KEY} is not a valid retrain result: {exc}",
        )


def condition(
    ctype: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int,
    now: str,
    previous: list[dict[str, Any]],
) -> dict[str, Any]:
    """A metav1.Condition; lastTransitionTime is kept while the status does not change."""
    text = "Unknown" if status is None else ("True" if status else "False")
    before = next((p for p in previous if p.get("type") == ctype), None)
    since = before["lastTransitionTime"] if before and before.get("status") == text else now
    return {
        "type": ctype,
        "status": text,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


def selector_string(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def _rollout(deployment: dict[str, Any] | None, replicas: int) -> tuple[bool | None, str, str]:
    """(rolled out?, reason, message) of the Deployment; None = blocked/failed."""
    if deployment is None:
        return False, "Creating", "the Deployment does not exist yet"
    st = deployment.get("status", {}) or {}
    for cond in st.get("conditions", []) or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return None, "RolloutStuck", f"pods did not become ready in time: {cond.get('message', '')}"
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return None, "ReplicaFailure", f"pods cannot be created: {cond.get('message', '')}"
    gen = deployment.get("metadata", {}).get("generation", 1)
    if st.get("observedGeneration", 0) < gen:
        return False, "RollingOut", "the Deployment controller has not seen the new pod template yet"
    updated, ready = st.get("updatedReplicas", 0) or 0, st.get("readyReplicas", 0) or 0
    total = st.get("replicas", 0) or 0
    if updated < replicas or ready < replicas or total > replicas:
        return (
            False,
            "RollingOut",
            (f"{min(updated, ready)}/{replicas} pods ready with the current spec ({total} pods in total)"),
        )
    return True, "RolloutComplete", f"{replicas}/{replicas} pods ready with the current spec"


BUNDLED_PREFIX = "bundled"  # the bundled generic predictor's artifact version, e.g. bundled-v1


def serves(pod: PodPredictor, desired: str) -> bool:
    """The pod answered and serves `desired`.

    Desired "" is the cold start: the bundled predictor, which a real sidecar reports under its artifact
    version ("bundled-v1"), not as "" (found on the real control plane: Ready stayed False forever with
    PredictorRollingOut)."""
    if not pod.ok:
        return False
    return pod.version == desired or (not desired and pod.version.startswith(BUNDLED_PREFIX))


def predictor_status(
    desired: str,
    source: str,
    pods: list[PodPredictor],
    previous: dict[str, Any],
    retrain: RetrainResult | Problem | None,
) -> dict[str, Any]:
    """status.predictor from the sidecars' answers and the last retrain result."""
    on = [p for p in pods if serves(p, desired)]
    current = desired if pods and len(on) == len(pods) else previous.get("current", "")
    out: dict[str, Any] = {
        "current": current,
        "desired": desired,
        "source": source,
        "podsOnCurrent": len(on),
        "pods": [
            {
                "name": p.name,
                "version": p.version,
                "onlineKendallTau": p.online_kendall_tau,
                "onlineSamples": p.online_samples,
                **({"error": p.error} if p.error else {}),
            }
            for p in pods
        ],
    }
    for key in (
        "candidate",
        "candidateKendallTau",
        "currentKendallTau",
        "lastRetrainTime",
        "lastRetrainResult",
        "lastRetrainReason",
        "lastRetrainSamples",
        "canary",
    ):
        if key in previous:
            out[key] = previous[key]
    if isinstance(retrain, RetrainResult):
        out.update(
            lastRetrainResult=retrain.status,
            lastRetrainReason=retrain.reason,
            lastRetrainSamples=retrain.samples,
        )
        if retrain.time:
            out["lastRetrainTime"] = retrain.time
        if retrain.status == "published":
            out["candidate"] = retrain.candidate
            for key, val in (
                ("candidateKendallTau", retrain.candidate_kendall_tau),
                ("currentKendallTau", retrain.current_kendall_tau),
            ):
                if val is not None:
                    out[key] = val
    elif isinstance(retrain, Problem):
        out.update(lastRetrainResult="invalid", lastRetrainReason=retrain.message)
    if out.get("candidate") and out["candidate"] == desired:
        out.pop("candidate")  # promoted: no longer a candidate
    return out


def _predictor_condition(desired: str, pods: list[PodPredictor]) -> tuple[bool | None, str, str]:
    label = desired or "the bundled generic predictor"
    if not pods:
        return None, "NoPods", "no pods to ask yet"
    answered = [p for p in pods if p.ok]
    on = [p for p in answered if serves(p, desired)]
    if not answered:
        return None, "SidecarsUnreachable", "; ".join(f"{p.name}: {p.error}" for p in pods)[:1000]
    if len(on) == len(pods):
        if not desired:
            return (
                True,
                "BundledPredictor",
                ("all pods serve the bundled generic predictor (cold start: no trained version yet)"),
            )
        return True, "AllPodsOnDesired", f"all {len(pods)} pods serve predictor {desired}"
    lagging = [f"{p.name}: {p.error or p.version or 'bundled'}" for p in pods if p not in on]
    return (
        False,
        "PredictorRollingOut",
        (f"{len(on)}/{len(pods)} pods serve {label}; waiting for " + "; ".join(lagging))[:1000],
    )


def compute_status(
    *,
    generation: int,
    replicas: int,
    problem: Problem | None,
    deployment: dict[str, Any] | None,
    pods: list[PodPredictor],
    desired: str,
    source: str,
    selector: dict[str, str],
    retrain: RetrainResult | Problem | None,
    previous: dict[str, Any],
    now: str,
) -> dict[str, Any]:
    """The whole status subresource for this observation."""
    prev_conditions = list(previous.get("conditions", []) or [])

    def cond(ctype: str, status: bool | None, reason: str, message: str) -> dict[str, Any]:
        return condition(ctype, status, reason, message, generation, now, prev_conditions)

    dst = (deployment or {}).get("status", {}) or {}
    p_status, p_reason, p_message = _predictor_condition(desired, pods)
    if problem is not None:
        conditions = [
            cond(c.READY, False, problem.reason, problem.message),
            cond(c.PROGRESSING, False, "Blocked", f"nothing rolls out until fixed: {problem.message}"),
            cond(c.DEGRADED, True, problem.reason, problem.message),
        ]
    else:
        rolled, reason, message = _rollout(deployment, replicas)
        degraded = rolled is None
        if replicas == 0 and not degraded:
            ready = cond(c.READY, False, "ScaledToZero", "spec.replicas is 0: nothing serves requests")
            progressing = cond(c.PROGRESSING, False, "ScaledToZero", "nothing to roll out")
        elif rolled and p_status is False:
            ready = cond(c.READY, False, "PredictorRollingOut", p_message)
            progressing = cond(c.PROGRESSING, True, "PredictorRollingOut", p_message)
        else:
            ready = cond(c.READY, bool(rolled), "Serving" if rolled else reason, message)
            progressing = cond(c.PROGRESSING, rolled is False, reason, message)
        conditions = [
            ready,
            progressing,
            cond(
                c.DEGRADED,
                degraded,
                reason if degraded else "AsExpected",
                message if degraded else "no problems found",
            ),
        ]
    conditions.append(cond(c.PREDICTOR_READY, p_status, p_reason, p_message))
    return {
        "observedGeneration": generation,
        "replicas": dst.get("replicas", 0) or 0,
        "readyReplicas": dst.get("readyReplicas", 0) or 0,
        "updatedReplicas": dst.get("updatedReplicas", 0) or 0,
        "selector": selector_string(selector),
        "conditions": conditions,
        "predictor": predictor_status(desired, source, pods, previous.get("predictor", {}) or {}, retrain),
    }
