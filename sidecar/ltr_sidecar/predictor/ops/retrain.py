"""`ltr predictor retrain`: train a new predictor version from the sidecars' traces and publish it
behind a quality gate.

Steps: read traces in the window (corrupt / prompt-less lines skipped and counted) -> split by time
(newest `--holdout-fraction` held out) -> train the candidate from the base version (default: the
store's latest; with an empty store the bundled ranker; `--base none` trains fresh): with
`--backbone auto` (the default) the base fine-tuned, a fresh fast ranker and, when the time budget
allows, an encoder compete on validation τ (see `starts`) -> evaluate candidate AND current on the
same held-out slice ->
publish an immutable version with lineage if the gate passes -> print (and optionally write to a file
and/or the result ConfigMap) one JSON result.

Exit codes: 0 published, 3 insufficient data, 4 rejected by the gate, 1 error.
Gate: candidate τ >= --min-kendall-tau and candidate τ > current τ on the held-out slice.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltr.contract import (
    EXIT_INSUFFICIENT,
    EXIT_PUBLISHED,
    EXIT_REJECTED,
    RETRAIN_RESULT_KEY,
    parse_duration,
)
from ltr.kube import KubeClient, load_configuration
from ltr_sidecar.data.traces import read_traces
from ltr_sidecar.predictor.ops.evaluate import evaluate
from ltr_sidecar.predictor.ops.options import RetrainOptions
from ltr_sidecar.predictor.runtime.base import Predictor
from ltr_sidecar.predictor.runtime.registry import bundled_predictor_path, load_predictor

if TYPE_CHECKING:
    from ltr_sidecar.predictor.runtime.neural import NeuralPredictor

FIELD_MANAGER = "ltr-retrain"
__all__ = [
    "EXIT_INSUFFICIENT",
    "EXIT_PUBLISHED",
    "EXIT_REJECTED",
    "parse_window",
    "report_result",
    "run_retrain",
]


def parse_window(text: str) -> float | None:
    """Seconds of a Go-duration window ("90s", "1h30m", "24h"); "0", "all" or "" → None (all traces)."""
    t = str(text).strip()
    if t.lower() in ("", "0", "all"):
        return None
    try:
        return parse_duration(t)
    except ValueError as exc:
        raise ValueError(f"bad --window {text!r}: {exc}; or 0 for all traces") from None


def parse_target(target: str) -> tuple[str, str]:
    """NAMESPACE/NAME → (namespace, name); ValueError otherwise."""
    if target.count("/") != 1 or not all(target.split("/")):
        raise ValueError(f"--report-configmap wants NAMESPACE/NAME, got {target!r}")
    namespace, name = target.split("/")
    return namespace, name


def report_result(target: str, result: dict[str, Any], kubeconfig: str | None = None) -> None:
    """Write the JSON result into ConfigMap `NS/NAME` (key RETRAIN_RESULT_KEY) by merge patch: the one
    object the job's Role lets it write. In-cluster credentials unless `kubeconfig` is given."""
    namespace, name = parse_target(target)

    async def write() -> None:
        async with KubeClient(await load_configuration(kubeconfig), user_agent=FIELD_MANAGER) as kube:
            text = json.dumps(result, sort_keys=True)
            await kube.patch(
                "ConfigMap",
                namespace,
                name,
                {"data": {RETRAIN_RESULT_KEY: text}},
                field_manager=FIELD_MANAGER,
            )

    asyncio.run(write())


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[retrain] {msg}", file=sys.stderr, flush=True)


def _finish(args: RetrainOptions, result: dict[str, Any], code: int) -> int:
    result["finished_at"] = time.time()
    text = json.dumps(result, sort_keys=True)
    print(text)
    if args.result_file:
        Path(args.result_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.result_file).write_text(text + "\n", encoding="utf-8")
    if args.report_configmap:
        try:
            report_result(args.report_configmap, result)
        except Exception as exc:  # reporting must not hide the job's own outcome
            print(f"[retrain] warning: could not report to {args.report_configmap}: {exc}", file=sys.stderr)
    return code


def run_retrain(args: RetrainOptions) -> int:
    """Run one retrain (see the module doc); returns the exit code."""
    from ltr_sidecar.predictor.ops.starts import plan_starts, resolve_encoder, run_starts
    from ltr_sidecar.predictor.runtime.neural import NeuralPredictor
    from ltr_sidecar.predictor.runtime.store import open_store

    quiet = args.train.quiet
    if not 0 < args.holdout_fraction < 1:
        raise ValueError("--holdout-fraction must be between 0 and 1")
    now = args.now if args.now is not None else time.time()
    window = parse_window(args.window)
    since = None if window is None else now - window
    store = open_store(args.store)
    examples, stats = read_traces(args.traces, since=since, model_name=args.model_name)
    _log(
        f"traces: {stats.files} files, {stats.lines} lines, {stats.used} usable, {stats.corrupt} corrupt, "
        f"{stats.no_prompt} without prompt, {stats.no_length} without length, "
        f"{stats.outside_window} outside the window",
        quiet,
    )
    result: dict[str, Any] = {
        "status": None,
        "candidate": None,
        "candidate_kendall_tau": None,
        "current": None,
        "current_kendall_tau": None,
        "samples": len(examples),
        "reason": "",
        "trace_stats": stats.__dict__,
    }
    n_hold = max(2, round(len(examples) * args.holdout_fraction))
    if len(examples) < max(args.min_samples, n_hold + 2):
        result.update(
            status="insufficient_data",
            reason=f"{len(examples)} usable samples in window, need at least {args.min_samples}",
        )
        _log(result["reason"], quiet)
        return _finish(args, result, EXIT_INSUFFICIENT)
    train_ex, hold_ex = examples[:-n_hold], examples[-n_hold:]

    base_version = args.base if args.base not in (None, "") else store.latest()
    if base_version == "none":
        base_version = None
    current: Predictor
    base_pred: NeuralPredictor | None = None
    if base_version is not None:
        base_path = store.resolve(base_version)
        current = load_predictor(base_path)
        if isinstance(current, NeuralPredictor):
            base_pred = NeuralPredictor.load(base_path)  # a second copy to fine-tune
    else:
        current = load_predictor(bundled_predictor_path())  # what serves at cold start
        auto = args.train.backbone in (None, "auto")
        if auto and args.base != "none" and isinstance(current, NeuralPredictor):
            # First retrain of a store: fine-tune the bundled ranker (seconds on CPU) rather than
            # train the default backbone from scratch; `--backbone X` or `--base none` trains fresh.
            base_pred = NeuralPredictor.load(bundled_predictor_path())
            base_version = current.version
    result["current"] = current.version
    spec = args.train.to_spec("candidate")
    if base_pred is not None:
        spec.objective = base_pred.objective
        base_pred.to(spec.device)
    backbone = args.train.backbone or "auto"
    budget = args.train.time_budget
    starts, skipped = plan_starts(
        spec, base_pred, backbone, n_train=len(train_ex), budget=budget, encoder=resolve_encoder(args.encoder)
    )
    _log(
        f"training on {len(train_ex)} samples (starts: {', '.join(s.name for s in starts)}; "
        f"{f'fine-tuning {base_version}' if base_pred else 'fresh'}), holding out the newest {len(hold_ex)}",
        quiet,
    )
    t0 = time.perf_counter()
    outcome = run_starts(starts, train_ex, budget, lambda m: _log(m, quiet), skipped)
    candidate, fit_result = outcome.candidate, outcome.fit
    result["start"] = outcome.summary()
    train_seconds = time.perf_counter() - t0
    cand_tau = evaluate(candidate, hold_ex, with_latency=False)["kendall_tau"]
    cur_tau = evaluate(current, hold_ex, with_latency=False)["kendall_tau"]
    result.update(
        candidate_kendall_tau=cand_tau,
        current_kendall_tau=cur_tau,
        train_seconds=round(train_seconds, 2),
        time_budget_exhausted=fit_result.budget_exhausted,
        holdout_samples=len(hold_ex),
    )
    _log(
        f"held-out tau: candidate {cand_tau:.4f} vs current {current.version} {cur_tau:.4f} "
        f"({train_seconds:.1f}s training)",
        quiet,
    )
    reasons = []
    if cand_tau != cand_tau or cand_tau < args.min_kendall_tau:
        reasons.append(f"candidate tau {cand_tau} below the minimum {args.min_kendall_tau}")
    if cur_tau == cur_tau and not cand_tau > cur_tau:
        reasons.append(f"candidate tau {cand_tau} does not beat current {current.version} ({cur_tau})")
    if reasons:
        result.update(status="rejected", reason="; ".join(reasons))
        _log("rejected: " + result["reason"], quiet)
        return _finish(args, result, EXIT_REJECTED)

    version = args.version or store.next_version()
    timestamps = [e.timestamp for e in examples if e.timestamp is not None]
    lineage = {
        "parent": base_version if outcome.chosen == "fine-tuned" else None,
        "data_window": {
            "window": args.window,
            "since": since,
            "until": now,
            "first_sample": min(timestamps, default=None),
            "last_sample": max(timestamps, default=None),
        },
        "samples": {"train": len(train_ex), "holdout": len(hold_ex)},
        "candidate_kendall_tau": cand_tau,
        "current_version": current.version,
        "current_kendall_tau": cur_tau,
        "trace_stats": stats.__dict__,
    }
    candidate.version = version
    with tempfile.TemporaryDirectory(prefix="ltr-retrain-") as tmp:
        art = Path(tmp) / version
        candidate.save(
            art, extra={"lineage": lineage, "parent": base_version, "holdout_kendall_tau": cand_tau}
        )
        store.publish(art, version)
    result.update(
        status="published", candidate=version, reason=f"candidate {cand_tau:.4f} beats current {cur_tau:.4f}"
    )
    _log(f"published {version} to {store.root}", quiet)
    if args.keep:
        deleted = store.retain(args.keep, protect=[*args.protect, version, base_version or ""])
        if deleted:
            _log(f"retention removed {', '.join(deleted)}", quiet)
        result["deleted"] = deleted
    return _finish(args, result, EXIT_PUBLISHED)
