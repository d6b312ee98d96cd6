"""Preemption study (issue 15, steps 1-2): is preempting running requests worth building?

On the simulated A100 / Llama-3-8B engine, AlpacaEval / Meta-Llama-3-8B-Instruct lengths (predictors
trained on 80% of the prompts, the other 20% replayed), rates 8..64 req/s, three arrival processes
(Poisson, Azure 2023 conversation and code traces) × prefix caching off/on, policies side by side:
fcfs, ltr, ltr-starve, oracle (non-preemptive SJF), srtf (preemptive, true lengths: the limit),
ltr-preempt(-starve|-paper) and ltr-rerank(-starve|-minus). Then a guard-rail (margin) sweep, and a
summary with the ratios to srtf, the gain of preemption and the step-3 decision. Needs ../shared/data
(AlpacaEval is CC BY-NC: read from there, never copied). Writes benchmarks/results/preempt-*.

    .venv/bin/python benchmarks/preempt.py [--shared DIR] [--backbone minilm]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ltr_sidecar.bench.cli import main as bench
from ltr_sidecar.bench.preempt_report import decision, summary_markdown, summary_rows

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
MODEL = "Meta-Llama-3-8B-Instruct"
POLICIES = (
    "fcfs,ltr,ltr-starve,oracle,srtf,ltr-preempt,ltr-preempt-starve,ltr-preempt-paper,"
    "ltr-rerank,ltr-rerank-starve,ltr-rerank-minus"
)
RATES = "8,16,32,48,64"
SUMMARY_RATES = (16.0, 32.0, 48.0, 64.0)
MARGINS = ("0", "0.25", "1")
COLUMNS = (
    "config",
    "rate",
    "ltr/srtf",
    "ltr-preempt/srtf",
    "ltr-rerank/srtf",
    "oracle/srtf",
    "gain ltr-preempt",
    "gain ltr-rerank",
    "gain ltr-rerank-minus",
    "gain ltr-preempt-paper",
    "gain ltr-preempt-starve vs ltr-starve",
)
COST_COLUMNS = (
    "config",
    "rate",
    "preemptions srtf",
    "recomputed/output srtf",
    "preemptions ltr-preempt",
    "recomputed/output ltr-preempt",
    "preemptions ltr-rerank",
    "recomputed/output ltr-rerank",
    "max wait fcfs s",
    "max wait ltr-starve s",
    "max wait ltr-preempt s",
    "max wait ltr-preempt-starve s",
    "max wait ltr-rerank-starve s",
)

MARGIN_COLUMNS = (
    "config",
    "rate",
    "ltr-preempt/srtf",
    "ltr-rerank/srtf",
    "gain ltr-preempt",
    "gain ltr-rerank",
    "preemptions ltr-preempt",
    "preemptions ltr-rerank",
)
QUALITY_COLUMNS = tuple(
    ["generated", "requests"]
    + [f"{k}_{m}" for m in ("tau", "bias", "mae") for k in ("static", "residual", "minus")]
)

BACKBONE_HELP = (
    "LTR predictor backbone; with minilm only Poisson arrivals run and the calibration folds use "
    "the fast backbone (cross-fitting MiniLM 5 times takes hours on CPU)"
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=os.environ.get("LTR_SHARED_DATA", str(SHARED)))
    p.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--backbone", default="fast", help=BACKBONE_HELP)
    p.add_argument(
        "--summary-only", action="store_true", help="rebuild the summary from the runs' JSON files"
    )
    args = p.parse_args()
    shared, out = Path(args.shared), Path(args.out_dir)
    data = shared / "alpaca-eval" / "responses" / f"{MODEL}.jsonl"
    if not data.exists() and not args.summary_only:
        print(f"needs the shared data folder (AlpacaEval): {data} not found", file=sys.stderr)
        return 2
    fast = args.backbone == "fast"
    suffix = "" if fast else f"-{args.backbone}"
    common = f"--engine sim --profile a100-llama3-8b --holdout 0.2 --backbone {args.backbone}".split()
    common += ["--data", str(data), "--out-dir", str(out)] + (
        [] if fast else ["--calibration-backbone", "fast"]
    )

    def run(name: str, flags: list[str]) -> dict:
        path = out / f"{name}.json"
        if not args.summary_only and bench([*common, *flags, "--name", name, "--json", str(path)]):
            raise SystemExit(f"benchmark {name} failed")
        return json.loads(path.read_text())

    traces = shared / "azure-llm-inference-2023"
    arrivals: dict[str, list[str]] = {"poisson": []} | (
        {
            f"azure-{k}": ["--arrivals", "trace", "--trace", str(traces / f"{k}.jsonl")]
            for k in ("conv", "code")
        }
        if fast
        else {}
    )
    docs = {
        f"{arrival}{' +prefix-cache' if caching else ''}": run(
            f"preempt-{arrival}-{'pc' if caching else 'nopc'}{suffix}",
            [*flags, "--rates", RATES, "--policies", POLICIES, *(["--prefix-caching"] if caching else [])],
        )
        for arrival, flags in arrivals.items()
        for caching in (False, True)
    }
    margin_docs = {
        f"poisson, margin {m}": run(
            f"preempt-margin-{m}",
            [
                "--rates",
                "32,64",
                "--policies",
                "ltr,srtf,ltr-preempt,ltr-rerank",
                "--preempt-margin",
                m,
                "--no-plots",
            ],
        )
        for m in (MARGINS if fast else ())
    }
    margin_docs["poisson, margin 0.5 (default)"] = docs["poisson"]
    write_summary(docs, margin_docs, out / f"preempt-summary{suffix}", args.backbone)
    return 0


def write_summary(docs: dict, margin_docs: dict, stem: Path, backbone: str) -> None:
    rows = summary_rows(docs, SUMMARY_RATES)
    verdict = decision(rows)
    first = next(iter(docs.values()))["config"]
    quality = first.get("calibration", {}).get("remaining_quality", {})
    margin_rows = summary_rows(margin_docs, (32.0, 64.0))
    stem.with_suffix(".json").write_text(
        json.dumps(
            {
                "decision": verdict,
                "rows": rows,
                "margin_rows": margin_rows,
                "remaining_quality": quality,
                "preemption": first.get("preemption"),
                "calibration": first.get("calibration"),
                "predictors": first.get("predictors"),
                "backbone": backbone,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    best, at = verdict["best_learned"], verdict["at"]
    verdict_text = (
        f"{verdict['rule']}: best ltr-preempt gain {verdict['best_gain_ltr_preempt']:+.1%} "
        f"({at['config']}, {at['rate']:g} req/s); best of any learned preemptive variant "
        f"{verdict['best_gain_any_learned']:+.1%} ({best['policy']}, {best['config']}, "
        f"{best['rate']:g} req/s) "
        f"-> **{'build' if verdict['build_step_3'] else 'do not build'} step 3**."
    )
    sections = [
        f"# Preemption study: simulated A100 / Llama-3-8B, AlpacaEval lengths, {backbone} predictor",
        f"Guard rails (ltr-preempt, ltr-rerank): {first.get('preemption')}; srtf and ltr-preempt-paper have "
        "none. Starvation threshold 60 s.",
        f"## Decision\n\n{verdict_text}",
        "## Mean per-token latency ratios and gains (gain = 1 - policy/ltr)\n\n"
        + summary_markdown(rows, COLUMNS),
        "## Costs and waits\n\n" + summary_markdown(rows, COST_COLUMNS),
        "## Margin sweep (Poisson, no prefix cache)\n\n" + summary_markdown(margin_rows, MARGIN_COLUMNS),
        "## Remaining-length estimators on the replayed prompts\n\nMixed-progress Kendall tau (each request "
        f"at a random point of its generation): {quality.get('mixed_tau')}\n\n"
        + summary_markdown(quality.get("by_generated", []), QUALITY_COLUMNS),
    ]
    text = "\n\n".join(sections) + "\n"
    stem.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
