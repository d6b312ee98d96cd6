"""Simulator sweep like the paper's Figure 3 on AlpacaEval / Meta-Llama-3-8B-Instruct lengths.

Predictors are trained on 80% of the AlpacaEval prompts; the other 20% are replayed (Poisson
arrivals, 60 s × rate requests, rates 2..64 req/s) on a simulated Llama-3-8B engine with A100 and
H100 figures, plus one run with Azure 2023 conversation-trace arrivals. Needs ../shared/data
(AlpacaEval is CC BY-NC: read from there, never copied). Writes benchmarks/results/sim-*.

    .venv/bin/python benchmarks/sim.py [--shared DIR] [--backbone minilm]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ltr_sidecar.bench.cli import main as bench

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
MODEL = "Meta-Llama-3-8B-Instruct"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=os.environ.get("LTR_SHARED_DATA", str(SHARED)))
    p.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--backbone", default="fast", help="LTR predictor backbone (fast or minilm)")
    args = p.parse_args()
    data = Path(args.shared) / "alpaca-eval" / "responses" / f"{MODEL}.jsonl"
    if not data.exists():
        print(f"needs the shared data folder (AlpacaEval): {data} not found", file=sys.stderr)
        return 2
    suffix = "" if args.backbone == "fast" else f"-{args.backbone}"
    common = [
        "--engine",
        "sim",
        "--backbone",
        args.backbone,
        "--data",
        str(data),
        "--holdout",
        "0.2",
        "--out-dir",
        args.out_dir,
        "--rates",
        "2,4,8,16,32,48,64",
    ]
    for profile in ("a100-llama3-8b", "h100-llama3-8b"):
        name = f"sim-alpaca-{profile}{suffix}"
        code = bench(
            [
                *common,
                "--profile",
                profile,
                "--name",
                name,
                "--json",
                str(Path(args.out_dir) / f"{name}.json"),
            ]
        )
        if code:
            return code
    trace = Path(args.shared) / "azure-llm-inference-2023" / "conv.jsonl"
    name = f"sim-alpaca-azure-conv-a100{suffix}"
    return bench(
        [
            *common,
            "--arrivals",
            "trace",
            "--trace",
            str(trace),
            "--name",
            name,
            "--json",
            str(Path(args.out_dir) / f"{name}.json"),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
