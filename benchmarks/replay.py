"""Real-engine replay on AlpacaEval / Meta-Llama-3-8B-Instruct lengths through the real sidecar.

The tiny random-initialised Llama served by `transformers serve --continuous-batching` on CPU plays
the engine; the sidecar admits 3 requests at a time, so a queue forms and its order matters.
Predictors are trained on 80% of the AlpacaEval prompts, the other 20% are replayed (Poisson,
saturating rate) under all six policies, one after the other against the same engine. Needs
../shared/data. Writes benchmarks/results/replay-alpaca.{md,json} and replay-alpaca-cdf.png.

    .venv/bin/python benchmarks/replay.py [--backbone minilm] [--requests N] [--rate R] [--rounds K]
        [--policies fcfs,ltr,ltr-starve,oracle] [--name replay-alpaca-heavy]
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
    p.add_argument("--requests", default="60")
    p.add_argument("--rate", default="6")
    p.add_argument("--max-output-tokens", default="512")
    p.add_argument("--starvation-threshold", default="15")
    p.add_argument("--rounds", default="2", help="workload repeats per policy, order rotated (noise)")
    p.add_argument(
        "--backbone",
        default="fast",
        help="backbone of the LTR predictor trained on the 80%% (fast, or minilm: ~10-30 min on CPU, cached)",
    )
    p.add_argument("--predictor", help="LTR predictor artifact (default: trained on the 80%%)")
    p.add_argument("--classifier", help="classifier artifact (default: fast backbone trained on the 80%%)")
    p.add_argument("--policies", help="comma-separated subset (default: all six)")
    p.add_argument("--name", default="replay-alpaca", help="result file prefix in --out-dir")
    args = p.parse_args()
    data = Path(args.shared) / "alpaca-eval" / "responses" / f"{MODEL}.jsonl"
    if not data.exists():
        print(f"needs the shared data folder (AlpacaEval): {data} not found", file=sys.stderr)
        return 2
    name = args.name
    extra = [
        *(["--policies", args.policies] if args.policies else []),
        *(["--predictor", args.predictor] if args.predictor else []),
        *(["--classifier", args.classifier] if args.classifier else []),
    ]
    return bench(
        [
            *extra,
            "--backbone",
            args.backbone,
            "--rounds",
            args.rounds,
            "--engine",
            "local",
            "--data",
            str(data),
            "--holdout",
            "0.2",
            "--requests",
            args.requests,
            "--rate",
            args.rate,
            "--max-output-tokens",
            args.max_output_tokens,
            "--starvation-threshold",
            args.starvation_threshold,
            "--out-dir",
            args.out_dir,
            "--name",
            name,
            "--json",
            str(Path(args.out_dir) / f"{name}.json"),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
