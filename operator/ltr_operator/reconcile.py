"""Reconcile one LTRServing: validate, apply the children, observe, write status, emit Events.

Idempotent: a child is created when missing (drift repair: a deleted child comes back), patched when
what we build is not already contained in it, left alone otherwise. A spec that cannot work becomes
Degraded with an Event once per change of reason - never an exception loop. API errors propagate
(the kopf handler turns them into retries with backoff).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ltr_operator import builders
from ltr_operator import constants as c
from ltr_operator.config import OperatorConfig
from ltr_operator.kube import ApiError, KubeClient
from ltr_operator.podprobe import AdminAccess, PodPredictor, load_predictor, pod_address, probe_pods
from ltr_operator.spec import LTRServingSpec, SpecError, parse_spec
from ltr_operator.status import Problem, RetrainResult, compute_status, parse_retrain_result

# (body, event type Normal|Warning, reason, message) → posts a Kubernetes Event (best effort)
Emit = Callable[[dict[str, Any], str, str, str], Awaitable[None]]
log = logging.getLogger("ltr_operator")


class ChildConflict(Exception):
    """A child's name is taken by an object this LTRServing does not own."""


def now_text() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def contains(want: Any, have: Any) -> bool:
    """Whether `have` already holds everything in `want` (extra server-side defaults are fine)."""
    if isinstance(want, dict):
        if not want:
            return have in (None, {}) or isinstance(have, dict)
        return isinstance(have, dict) and all(contains(v, have.get(k)) for k, v in want.items())
    if isinstance(want, list):
        if not want:
            return have in (None, [])
        return isinstance(have, list) and len(want) == len(have) and all(map(contains, want, have))
    return want == have or (want is not None and have is not None and str(want) == str(have))


def removal_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A merge patch turning `old` into `new` (keys gone from `new` are set to None)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        patch[key] = (
            removal_patch(before, value) if isinstance(value, dict) and isinstance(before, dict) else value
        )
    patch.update({key: None for key in old if key not in new})
    return patch


def resolve_images(spec: LTRServingSpec, cfg: OperatorConfig) -> tuple[str, str] | Problem:
    engine = spec.model.image or cfg.default_engine_images.get(spec.model.engine)
    if not engine:
        return Problem(
            "MissingModelImage",
            f"spec.model.image is not set and the operator has no default image "
            f"for engine {spec.model.engine!r}: set spec.model.image",
        )
    sidecar = spec.sidecar.image or cfg.sidecar_image
    if not sidecar:
        return Problem(
            "MissingSidecarImage",
            "spec.sidecar.image is not set and the operator was started "
            "without --sidecar-image: set spec.sidecar.image",
        )
    return engine, sidecar


def desired_predictor(spec: LTRServingSpec, promoted: str) -> tuple[str, str]:
    """(version, source): a pin wins, then the operator's promotion, else the bundled predictor."""
    if spec.predictor.version:
        return spec.predictor.version, "Pinned"
    if promoted:
        return promoted, "Promoted"
    return "", "Bundled"


def promotion_decision(spec: LTRServingSpec, result: RetrainResult, promoted: str) -> tuple[bool, str]:
    """(promote the candidate?, why) - the autoPromote gate."""
    tau = result.candidate_kendall_tau
    if result.status != "published" or not result.candidate or result.candidate == promoted:
        return False, "no new candidate"
    if spec.predictor.version:
        return (
            False,
            f"spec.predictor.version pins {spec.predictor.version}; candidate {result.candidate} waits",
        )
    if not spec.retraining.auto_promote:
        return False, f"candidate {result.candidate} waits for a manual pin (retraining.autoPromote is off)"
    if tau is None or tau < spec.retraining.min_kendall_tau:
        return False, (
            f"candidate {result.candidate} tau {tau} is below retraining.minKendallTau "
            f"{spec.retraining.min_kendall_tau}"
        )
    if result.current_kendall_tau is not None and promoted and tau <= result.current_kendall_tau:
        return False, (
            f"candidate {result.candidate} tau {tau:.3f} does not beat current "
            f"{result.current_kendall_tau:.3f}"
        )
    return True, f"candidate {result.candidate} tau {tau:.3f} passed the gate"


class NamespaceTerminating(Exception):
    """The LTRServing's namespace is being deleted: nothing to create or repair there any more."""


async def namespace_terminating(client: KubeClient, namespace: str) -> bool:
    ns = await client.get("Namespace", "", namespace)
    if ns is None:
        return False  # not readable as such (a test double): let the create answer for itself
    return bool(ns.get("metadata", {}).get("deletionTimestamp")) or (
        (ns.get("status") or {}).get("phase") == "Terminating"
    )


async def apply_secret(client: KubeClient, owner: builders.Owner, obj: dict[str, Any]) -> str:
    """Write-only server-side apply for Secrets: the operator may not read Secrets at all (RBAC grants
    only create and patch), so no get first; ownership is checked on what the apply returns. Not in a
    namespace being deleted: the apply would recreate a Secret its controller removed (a 403 per pass,
    found on the cluster tier)."""
    meta = obj["metadata"]
    if await namespace_terminating(client, meta["namespace"]):
        raise NamespaceTerminating(meta["namespace"])
    try:
        written = await client.apply(obj)
    except ApiError as exc:
        if exc.namespace_terminating:
            raise NamespaceTerminating(meta["namespace"]) from exc
        raise
    refs = written.get("metadata", {}).get("ownerReferences") or []
    if not any(ref.get("uid") == owner.uid for ref in refs):
        raise ChildConflict(f"Secret {meta['name']} already exists and is not owned by this LTRServing")
    return "applied"


async def apply_child(client: KubeClient, owner: builders.Owner, obj: dict[str, Any]) -> str:
    """created | updated | unchanged, by server-side apply with the operator's field manager (Secrets:
    applied, never read).

    Apply (not a merge patch) so that a field the spec no longer produces disappears from the child
    (found on the real control plane: a removed Service annotation stayed). A missing child is not
    recreated while its namespace is being deleted (that create is a 403 from NamespaceLifecycle)."""
    if obj["kind"] == "Secret":
        return await apply_secret(client, owner, obj)
    meta = obj["metadata"]
    current = await client.get(obj["kind"], meta["namespace"], meta["name"])
    if current is not None:
        refs = current.get("metadata", {}).get("ownerReferences") or []
        if not any(ref.get("uid") == owner.uid for ref in refs):
            raise ChildConflict(
                f"{obj['kind']} {meta['name']} already exists and is not owned by this LTRServing: "
                f"rename or delete it"
            )
    elif await namespace_terminating(client, meta["namespace"]):
        raise NamespaceTerminating(meta["namespace"])
    body = {k: v for k, v in obj.items() if k != "status"}
    try:
        applied = await client.apply(body)
    except ApiError as exc:
        if exc.namespace_terminating:
            raise NamespaceTerminating(meta["namespace"]) from exc
        raise
    if current is None:
        return "created"
    before = current.get("metadata", {}).get("resourceVersion")
    return "unchanged" if applied.get("metadata", {}).get("resourceVersion") == before else "updated"


def _weighted_tau(answers: list[PodPredictor]) -> tuple[float | None, int]:
    """Online Kendall tau over several pods, weighted by completions; (None, 0) without samples."""
    samples = sum(a.online_samples for a in answers)
    if not samples:
        return None, 0
    return sum(a.online_kendall_tau * a.online_samples for a in answers) / samples, samples


async def _canary_step(
    cfg: OperatorConfig,
    body: dict[str, Any],
    spec: LTRServingSpec,
    pods: list[dict[str, Any]],
    current: str,
    emit: Emit,
) -> tuple[str | None, dict[str, Any] | None]:
    """Advance a Canary rollout: (version to promote or None, canary record to keep in status or None).

    The candidate is loaded (PredictorAdmin.LoadPredictor) on canaryReplicas pods; after the analysis
    window and enough completions, its online tau must reach rollout.minKendallTau and must not be below
    the other pods' tau, else the canary pods are put back on `current`. A manual pin aborts the canary.
    """
    canary = dict(((body.get("status") or {}).get("predictor") or {}).get("canary") or {})
    candidate = canary.get("version") or ""
    if not candidate:
        return None, canary or None  # keeps a rolledBack record: the same candidate is not retried
    ro, timeout = spec.predictor.rollout, cfg.pod_probe_timeout_s
    port = AdminAccess(spec.sidecar.admin_port, cfg.admin_token)
    serving = sorted((p for p in pods if pod_address(p, port.port)), key=lambda p: p["metadata"]["name"])
    if not canary.get("pods"):
        canary.update(
            pods=[p["metadata"]["name"] for p in serving[: ro.canary_replicas]], startTime=now_text()
        )
    chosen = [p for p in serving if p["metadata"]["name"] in canary["pods"]]
    answers = {a.name: a for a in await probe_pods(serving, port, timeout)}
    if spec.predictor.version:
        verdict = f"spec.predictor.version pins {current}: canary of {candidate} aborted"
        promote = False
    else:
        lagging = [p for p in chosen if answers[p["metadata"]["name"]].version != candidate]
        errors = [
            e
            for e in await asyncio.gather(*(load_predictor(p, port, candidate, timeout) for p in lagging))
            if e
        ]
        on_canary = [answers[p["metadata"]["name"]] for p in chosen if p not in lagging]
        started = datetime.datetime.strptime(canary["startTime"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC
        )
        elapsed = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
        canary_tau, samples = _weighted_tau(on_canary)
        if errors:
            verdict, promote = f"could not load {candidate} on canary pods: {'; '.join(errors)}", False
        elif (
            not chosen
            or elapsed < ro.analysis_window_s
            or canary_tau is None
            or samples < ro.min_online_samples
        ):
            return None, canary  # still measuring
        else:
            others = [a for n, a in answers.items() if n not in canary["pods"] and a.ok]
            base_tau, _ = _weighted_tau(others)
            promote = canary_tau >= ro.min_kendall_tau and (base_tau is None or canary_tau >= base_tau)
            verdict = (
                f"canary {candidate}: online tau {canary_tau:.3f} over {samples} completions vs "
                f"{'n/a' if base_tau is None else f'{base_tau:.3f}'} on {current or 'the bundled predictor'} "
                f"(gate {ro.min_kendall_tau})"
            )
    if promote:
        await emit(body, "Normal", "CanaryPromoted", verdict)
        return candidate, None
    # Roll back ("" = the configured predictor: the bundled one at cold start); a failure is reported.
    failed = [
        e for e in await asyncio.gather(*(load_predictor(p, port, current, timeout) for p in chosen)) if e
    ]
    if failed:
        verdict += f"; rollback failed: {'; '.join(failed)}"
    await emit(body, "Warning", "CanaryRolledBack", verdict)
    return None, {"rolledBack": candidate, "reason": verdict[:500]}


async def _advance_predictor(
    client: KubeClient,
    cfg: OperatorConfig,
    body: dict[str, Any],
    owner: builders.Owner,
    spec: LTRServingSpec,
    retrain: RetrainResult | Problem | None,
    promoted: str,
    previous: dict[str, Any],
    pods: list[dict[str, Any]],
    emit: Emit,
) -> tuple[str, dict[str, Any] | None]:
    """Apply the autoPromote gate and the Canary state machine; (promoted version, canary record)."""
    canary_running = (previous.get("predictor") or {}).get("canary") or {}
    if isinstance(retrain, RetrainResult):
        go, why = promotion_decision(spec, retrain, promoted)
        if go and spec.predictor.rollout.strategy == "Canary":
            if retrain.candidate not in (canary_running.get("version"), canary_running.get("rolledBack")):
                canary_running = {"version": retrain.candidate}
                await emit(
                    body,
                    "Normal",
                    "CanaryStarted",
                    f"{why}; loading it on {spec.predictor.rollout.canary_replicas} pod(s) first",
                )
        elif go:
            promoted = await _promote(client, owner, body, retrain.candidate, why, emit)
    if spec.predictor.rollout.strategy != "Canary":
        return promoted, None
    current = desired_predictor(spec, promoted)[0]
    status = {**previous, "predictor": {**(previous.get("predictor") or {}), "canary": canary_running}}
    winner, record = await _canary_step(cfg, {**body, "status": status}, spec, pods, current, emit)
    if winner:
        promoted = await _promote(client, owner, body, winner, "the canary passed", emit)
    return promoted, record


async def reconcile(
    client: KubeClient, cfg: OperatorConfig, body: dict[str, Any], emit: Emit
) -> dict[str, Any]:
    """One full pass; returns the status written (or already present)."""
    meta = body["metadata"]
    owner = builders.Owner(meta["name"], meta["namespace"], meta["uid"])
    annotations = meta.get("annotations") or {}
    previous = body.get("status") or {}
    generation = int(meta.get("generation", 1))
    problem: Problem | None = None
    spec: LTRServingSpec | None = None
    try:
        spec = parse_spec(body.get("spec"))
    except SpecError as exc:
        problem = Problem("InvalidSpec", "; ".join(exc.problems)[:2000])
    images: tuple[str, str] | Problem | None = resolve_images(spec, cfg) if spec else None
    if isinstance(images, Problem):
        problem = images
    store = spec.predictor.store if spec else None
    if (
        problem is None
        and store is not None
        and store.existing_claim
        and await client.get("PersistentVolumeClaim", owner.namespace, store.existing_claim) is None
    ):
        problem = Problem(
            "StoreUnavailable",
            f"PersistentVolumeClaim {store.existing_claim!r} "
            f"(spec.predictor.store.existingClaim) does not exist in "
            f"namespace {owner.namespace}",
        )
    report = (
        await client.get("ConfigMap", owner.namespace, builders.names(owner.name)["retrain_result"])
        if spec is not None and spec.retraining.enabled
        else None
    )
    retrain = parse_retrain_result(((report or {}).get("data") or {}).get(c.RETRAIN_RESULT_KEY))
    promoted = annotations.get(c.ANNOTATION_PROMOTED, "")
    selector = builders.selector(owner)
    pods = await client.list("Pod", owner.namespace, selector) if spec else []
    canary_status: dict[str, Any] | None = None
    if spec is not None and problem is None:
        promoted, canary_status = await _advance_predictor(
            client, cfg, body, owner, spec, retrain, promoted, previous, pods, emit
        )
    desired, source = desired_predictor(spec, promoted) if spec else ("", "Bundled")
    if spec is not None and problem is None and not isinstance(images, Problem) and images is not None:
        inputs = builders.Inputs(
            engine_image=images[0],
            sidecar_image=images[1],
            predictor_version=desired,
            admin_token=cfg.admin_token,
            operator=cfg.operator,
        )
        try:
            for child in builders.build_children(owner, spec, inputs):
                outcome = await apply_child(client, owner, child)
                if outcome not in ("unchanged", "applied"):
                    log.info(
                        "%s %s/%s %s", outcome, child["kind"], owner.namespace, child["metadata"]["name"]
                    )
            for kind, name in builders.retired_children(owner, spec):
                existing = await client.get(kind, owner.namespace, name)
                refs = (existing or {}).get("metadata", {}).get("ownerReferences") or []
                if any(ref.get("uid") == owner.uid for ref in refs):
                    await client.delete(kind, owner.namespace, name)
        except ChildConflict as exc:
            problem = Problem("ChildConflict", str(exc))
    deployment = await client.get("Deployment", owner.namespace, builders.names(owner.name)["deployment"])
    admin = AdminAccess(spec.sidecar.admin_port, cfg.admin_token) if spec else None
    answers = await probe_pods(pods, admin, cfg.pod_probe_timeout_s) if admin else []
    status = compute_status(
        generation=generation,
        replicas=spec.replicas if spec else 0,
        problem=problem,
        deployment=deployment,
        pods=answers,
        desired=desired,
        source=source,
        selector=selector,
        retrain=retrain,
        previous=previous,
        now=now_text(),
    )
    if canary_status is not None:
        status["predictor"]["canary"] = canary_status
    else:
        status["predictor"].pop("canary", None)
    if status != (body.get("status") or {}):
        await client.patch(
            c.KIND,
            owner.namespace,
            owner.name,
            {"status": removal_patch(body.get("status") or {}, status)},
            subresource="status",
        )
        await _emit_transitions(body, body.get("status") or {}, status, emit)
    return status


async def _promote(
    client: KubeClient, owner: builders.Owner, body: dict[str, Any], version: str, why: str, emit: Emit
) -> str:
    await client.patch(
        c.KIND, owner.namespace, owner.name, {"metadata": {"annotations": {c.ANNOTATION_PROMOTED: version}}}
    )
    await emit(body, "Normal", "PredictorPromoted", f"rolling out predictor {version}: {why}")
    return version


async def _emit_transitions(
    body: dict[str, Any], old: dict[str, Any], new: dict[str, Any], emit: Emit
) -> None:
    """An Event when a condition changes status or reason (not on every resync)."""
    before = {cd["type"]: cd for cd in old.get("conditions", []) or []}
    for cd in new["conditions"]:
        prev = before.get(cd["type"], {})
        if (prev.get("status"), prev.get("reason")) == (cd["status"], cd["reason"]):
            continue
        if cd["type"] == c.DEGRADED and cd["status"] == "True":
            await emit(body, "Warning", cd["reason"], cd["message"])
        elif cd["type"] == c.READY and cd["status"] == "True":
            await emit(body, "Normal", "Ready", cd["message"])
        elif cd["type"] == c.PREDICTOR_READY and cd["status"] == "True" and prev:
            await emit(body, "Normal", "PredictorRolledOut", cd["message"])
