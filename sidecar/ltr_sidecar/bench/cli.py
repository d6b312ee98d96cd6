"""`ltr bench`: policies side by side on the engine simulator or a real engine behind the sidecar.

    ltr bench --engine sim --json out.json                 # rate sweep on the simulator
    ltr bench --engine local --json out.json               # tiny CPU engine + real sidecar, one rate
    ltr bench --engine http://127.0.0.1:8000 --rate 4      # any OpenAI-compatible engine
    ltr bench predictor ...                                # predictor benchmark (ranking quality)
    ltr bench overhead ...                                 # sidecar's added TTFT and relay throughput
    ltr bench learning-curve ...                           # cold start per workload, τ vs retrain size
    ltr bench scoring ...                                  # scorer under Poisson load (64 req/s default)

Without `--data`, the workload is the shipped sample's held-out part and the predictors are trained
on its training part (cached). See docs/bench.md.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from ltr_sidecar.bench import predictors as predictor_setup
from ltr_sidecar.bench import report
from ltr_sidecar.bench.engine_model import PROFILES, get_profile
from ltr_sidecar.bench.policies import LTR, POLICY_NAMES, PREEMPTIVE_NAMES, select_policies
from ltr_sidecar.bench.preemption import PreemptionConfig
from ltr_sidecar.bench.workload import (
    WorkItem,
    examples_from_file,
    load_trace,
    poisson_workload,
    trace_workload,
)
from ltr_sidecar.data.datasets import SAMPLE_HELDOUT, SAMPLE_TRAIN, DataError, Example

DEFAULT_SIM_RATES = (2.0, 4.0, 8.0, 16.0, 32.0, 48.0, 64.0)
REAL_DEFAULTS = {"requests": 80, "rate": 8.0, "max_output_tokens": 512}


def _floats(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError("rates must be positive numbers")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ltr bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument(
        "--engine",
        default="sim",
        help="sim (simulator), local (start the tiny CPU engine), or an engine base URL",
    )
    data = p.add_argument_group("workload")
    data.add_argument(
        "--data",
        help="JSONL file or dataset dir to draw prompts and true lengths from "
        "(default: the shipped sample's held-out part)",
    )
    data.add_argument("--model-name", help="model whose lengths to use (AlpacaEval / multi-model data)")
    data.add_argument(
        "--holdout",
        type=float,
        default=0.0,
        help="replay only this fraction of --data's prompts; train predictors on the rest",
    )
    data.add_argument("--train-data", help="data to train the predictors on (instead of --holdout)")
    data.add_argument("--rate", type=float, help="arrival rate, requests/s (one run; real engine default 8)")
    data.add_argument("--rates", type=_floats, help="comma-separated rates for a sweep (simulator)")
    data.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="seconds of arrivals per run: requests = rate × duration (paper: 60)",
    )
    data.add_argument(
        "--requests",
        type=int,
        help="number of requests per run (overrides --duration; real engine default 80)",
    )
    data.add_argument("--arrivals", choices=("poisson", "trace"), default="poisson")
    data.add_argument("--trace", help="arrival trace JSONL (Azure 2023 format) for --arrivals trace")
    data.add_argument(
        "--max-output-tokens", type=int, help="cap true output lengths (real engine default 512; 0 = no cap)"
    )
    data.add_argument("--seed", type=int, default=0)
    pol = p.add_argument_group("policies")
    pol.add_argument(
        "--policies",
        default=",".join(POLICY_NAMES),
        help=f"comma-separated subset of {','.join(POLICY_NAMES)}; simulator only: "
        f"{','.join(PREEMPTIVE_NAMES)}",
    )
    pol.add_argument(
        "--starvation-threshold",
        type=float,
        help="seconds before a waiting request is promoted (ltr-starve); default 60 in the "
        "simulator, 5 on a real engine",
    )
    pol.add_argument(
        "--predictor",
        help="LTR predictor artifact dir (default: the bundled one for the "
        "shipped sample, else trained on the training part)",
    )
    pol.add_argument("--classifier", help="length-bucket classifier artifact dir (default: trained)")
    pol.add_argument(
        "--backbone",
        default="fast",
        help="backbone when the benchmark trains the LTR predictor: fast (seconds), minilm "
        "(all-MiniLM-L6-v2 fine-tune, ~10-30 min on CPU) or an HF model dir",
    )
    pol.add_argument(
        "--cache-dir",
        default=".cache/bench-predictors",
        help="where predictors trained by the benchmark are cached",
    )
    sim = p.add_argument_group("simulator")
    sim.add_argument("--profile", default="a100-llama3-8b", choices=sorted(PROFILES))
    sim.add_argument(
        "--prefix-caching",
        action="store_true",
        help="keep preempted requests' KV blocks cached (LRU); resume recomputes only the rest",
    )
    guard = PreemptionConfig()
    sim.add_argument(
        "--preempt-margin",
        type=float,
        default=guard.margin,
        help="preempt only if the victim's estimated remaining tokens are >= (1 + margin) x "
        "the candidate's (preemptive policies)",
    )
    sim.add_argument(
        "--min-progress",
        type=int,
        default=guard.min_progress_tokens,
        help="tokens a request emits after (re)admission before it may be preempted",
    )
    sim.add_argument(
        "--max-preemptions",
        type=int,
        default=guard.max_preemptions,
        help="priority preemptions per request; then it runs to completion",
    )
    sim.add_argument("--max-preemptions-per-step", type=int, default=guard.max_per_step)
    sim.add_argument(
        "--rerank-every",
        type=int,
        default=guard.rerank_every,
        help="tokens between re-estimates of a running request's remaining length",
    )
    sim.add_argument(
        "--calibration-folds",
        type=int,
        default=5,
        help="cross-fitting folds for the score -> expected tokens calibration",
    )
    sim.add_argument(
        "--calibration-backbone",
        help="backbone of the cross-fitted fold predictors (default: --backbone; 'fast' "
        "approximates a slow backbone's calibration)",
    )
    real = p.add_argument_group("real engine")
    real.add_argument(
        "--max-concurrency",
        type=int,
        default=3,
        help="sidecar admission limit (small so the queue forms on the tiny engine)",
    )
    real.add_argument("--engine-model", default="", help="model name to send to the engine (URL engines)")
    real.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the workload this many times per policy, rotating the policy order "
        "(averages out machine-load drift; default 1)",
    )
    real.add_argument("--warmup", type=int, default=4, help="warm-up requests before each policy")
    out = p.add_argument_group("output")
    out.add_argument("--json", dest="json_out", help="write the results JSON here")
    out.add_argument("--out-dir", default="benchmarks/results", help="markdown + PNG plots go here")
    out.add_argument("--name", help="file name prefix in --out-dir (default: sim / replay)")
    out.add_argument("--no-plots", action="store_true")
    return p


# `ltr bench NAME ...` -> that benchmark module's main(argv)
SUB_BENCHMARKS = {
    "predictor": "ltr_sidecar.bench.predictor_bench",
    "overhead": "ltr_sidecar.bench.overhead",
    "learning-curve": "ltr_sidecar.bench.learning_curve",
    "scoring": "ltr_sidecar.bench.scoring_load",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUB_BENCHMARKS:
        module = importlib.import_module(SUB_BENCHMARKS[argv[0]])
        return int(module.main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM cleans up like Ctrl-C
    try:
        return run(args)
    except (ValueError, DataError, FileNotFoundError, RuntimeError, TimeoutError) as exc:
        print(f"ltr bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ltr bench: interrupted; engine and sidecar stopped, temporary files removed", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_split(args: argparse.Namespace) -> tuple[list[Example], list[Example] | None, str]:
    """(replay examples, predictor training examples or None, description of the data)."""
    if args.data:
        examples = examples_from_file(args.data, args.model_name)
        desc = f"{Path(args.data).name}" + (f" / {args.model_name}" if args.model_name else "")
    else:
        held, train = shipped_split()
        if args.train_data is None:
            return held, train, "shipped sample (held-out part)"
        examples, desc = held, "shipped sample (held-out part)"
    train_ex: list[Example] | None = None
    if args.train_data:
        train_ex = examples_from_file(args.train_data, args.model_name)
    elif args.holdout:
        train_ex, examples = predictor_setup.split_holdout(examples, args.holdout, args.seed)
        desc += f", held-out {args.holdout:.0%} ({len(examples)} prompts)"
    return examples, train_ex, desc


def shipped_split() -> tuple[list[Example], list[Example]]:
    """(held-out, train) examples of the shipped sample (package data, `ltr_sidecar/data/sample/`)."""
    if not (SAMPLE_HELDOUT.is_file() and SAMPLE_TRAIN.is_file()):
        raise FileNotFoundError(f"the shipped sample is missing from {SAMPLE_HELDOUT.parent}; pass --data")
    return examples_from_file(SAMPLE_HELDOUT), examples_from_file(SAMPLE_TRAIN)


def make_workload(args: argparse.Namespace, examples: list[Example], rate: float) -> list[WorkItem]:
    n = args.requests or max(1, round(rate * args.duration))
    if args.arrivals == "trace":
        if not args.trace:
            raise ValueError("--arrivals trace needs --trace FILE (Azure 2023 format)")
        trace = load_trace(args.trace)
        natural = (len(trace) - 1) / max(1e-9, trace[-1]["timestamp"] - trace[0]["timestamp"])
        return trace_workload(
            examples,
            trace,
            n,
            time_scale=rate / natural,
            seed=args.seed,
            max_output_tokens=args.max_output_tokens,
        )
    return poisson_workload(examples, rate, n, seed=args.seed, max_output_tokens=args.max_output_tokens)


def run(args: argparse.Namespace) -> int:
    if args.engine != "sim":  # a real engine is slow: a modest saturating default
        args.requests = args.requests or REAL_DEFAULTS["requests"]
        args.rate = args.rate or REAL_DEFAULTS["rate"]
        if args.max_output_tokens is None:
            args.max_output_tokens = REAL_DEFAULTS["max_output_tokens"]
    policies = select_policies([s.strip() for s in args.policies.split(",") if s.strip()])
    if args.engine != "sim" and any(p.preemptive for p in policies):
        raise ValueError(
            "preemptive policies run on the simulator only (--engine sim): the sidecar "
            "does not preempt engine requests"
        )
    examples, train_ex, data_desc = load_split(args)
    log(
        f"data: {data_desc}: {len(examples)} replay examples"
        + (f", {len(train_ex)} for training predictors" if train_ex else "")
    )
    needed = [p.scorer for p in policies if p.scorer]
    if not args.data and not args.train_data and not args.predictor:
        from ltr_sidecar.predictor.runtime.registry import bundled_predictor_path

        args.predictor = str(bundled_predictor_path())  # trained on the shipped training part
    preds = predictor_setup.resolve_predictors(
        needed,
        train_ex,
        ltr_dir=args.predictor,
        classifier_dir=args.classifier,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        backbone=args.backbone,
        log=log,
    )
    config: dict[str, Any] = {
        "engine": args.engine,
        "data": data_desc,
        "replay_examples": len(examples),
        "arrivals": args.arrivals,
        "duration_s": args.duration,
        "requests": args.requests,
        "max_output_tokens": args.max_output_tokens,
        "seed": args.seed,
        "policies": {p.name: p.description for p in policies},
        "predictors": {k: getattr(v, "version", "") for k, v in preds.items()},
    }
    out_dir = Path(args.out_dir)
    if args.engine == "sim":
        return run_sim(args, policies, preds, examples, config, out_dir, train_ex)
    from ltr_sidecar.bench.replay import run_real

    return run_real(args, policies, preds, examples, config, out_dir, make_workload, log)


def sim_settings(
    args: argparse.Namespace,
    policies: list[Any],
    preds: dict[str, Any],
    examples: list[Example],
    train_ex: list[Example] | None,
    config: dict[str, Any],
) -> Any:
    """Preemption guard rails, prefix caching and (when a learned estimator needs it) the calibration."""
    from dataclasses import asdict

    from ltr_sidecar.bench.sim_bench import SimSettings

    preemption = PreemptionConfig(
        margin=args.preempt_margin,
        min_progress_tokens=args.min_progress,
        max_preemptions=args.max_preemptions,
        max_per_step=args.max_preemptions_per_step,
        rerank_every=args.rerank_every,
    )
    calibration = None
    if any(p.estimator not in (None, "true") for p in policies):
        if not train_ex:
            raise ValueError(
                "learned preemptive policies need training data to calibrate scores "
                "(--holdout or --train-data)"
            )
        from ltr_sidecar.bench.crossfit import crossfit_calibration

        calibration, info = crossfit_calibration(
            train_ex,
            preds[LTR],
            folds=args.calibration_folds,
            seed=args.seed,
            backbone=args.calibration_backbone or args.backbone,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
            log=log,
        )
        from ltr_sidecar.bench.crossfit import remaining_quality

        distinct = list({e.prompt: e for e in examples}.values())  # replayed prompts: evaluation only
        info["remaining_quality"] = remaining_quality(
            calibration,
            preds[LTR].score([e.prompt for e in distinct]),
            [min(max(1, round(e.length)), args.max_output_tokens or 1 << 30) for e in distinct],
            every=args.rerank_every,
        )
        config["calibration"] = info
    if any(p.preemptive for p in policies):
        config.update(preemption=asdict(preemption), prefix_caching=args.prefix_caching)
    return SimSettings(preemption, calibration, args.prefix_caching)


def run_sim(
    args: argparse.Namespace,
    policies: list[Any],
    preds: dict[str, Any],
    examples: list[Example],
    config: dict[str, Any],
    out_dir: Path,
    train_ex: list[Example] | None = None,
) -> int:
    from ltr_sidecar.bench.sim_bench import sweep, sweep_rows

    profile = get_profile(args.profile)
    rates = args.rates or ([args.rate] if args.rate else list(DEFAULT_SIM_RATES))
    threshold = 60.0 if args.starvation_threshold is None else args.starvation_threshold
    config.update(
        profile=profile.name,
        rates=rates,
        starvation_threshold_s=threshold,
        max_num_seqs=profile.max_num_seqs,
        kv_capacity_tokens=profile.kv_capacity_tokens,
    )
    settings = sim_settings(args, policies, preds, examples, train_ex, config)
    scorers = {k: v.score for k, v in preds.items()}
    runs = sweep(
        lambda r: make_workload(args, examples, r),
        sorted(rates),
        policies,
        scorers,
        profile,
        threshold,
        progress=log,
        settings=settings,
    )
    rows = sweep_rows(runs)
    top, top_runs = runs[-1]
    name = args.name or "sim"
    table = report.markdown_table({n: r.metrics for n, r in top_runs.items()})
    arrivals = "Azure-trace" if args.arrivals == "trace" else "Poisson"
    text = (
        f"# Simulator: {profile.name}, {config['data']}\n\n{arrivals} arrivals, "
        f"{args.requests or f'rate × {args.duration:g} s'} requests per rate, "
        f"starvation threshold {threshold:g} s\n\n"
        f"## Sweep: mean per-token latency\n\n"
        f"{report.sweep_table(rows)}\n\n## All metrics at {top:g} req/s\n\n{table}\n"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)
    if not args.no_plots:
        if len(runs) > 1:
            p = report.plot_sweep(
                rows,
                out_dir / f"{name}-latency-vs-rate.png",
                title=f"Simulated {profile.name}: latency vs rate",
            )
            log(f"plot: {p}")
        p = report.plot_cdf(
            {n: r.results for n, r in top_runs.items()},
            out_dir / f"{name}-cdf.png",
            title=f"Simulated {profile.name} at {top:g} req/s",
        )
        log(f"plot: {p}")
    log(f"table: {out_dir / f'{name}.md'}")
    if args.json_out:
        report.write_json(args.json_out, rows[-1]["policies"], config, sweep=rows)
        log(f"json: {args.json_out}")
    return 0
