"""Dynamic int8 per tensor vs per output channel for an encoder artifact, side by side in one process:
τ and one-thread CPU latency of float32, int8 per tensor and int8 per channel on the same examples.

Usage: python benchmarks/int8_schemes.py ARTIFACT [ARTIFACT ...] --data test.jsonl [--model-name M]
       [--out benchmarks/results] [--name int8-schemes]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from typing import Any

import torch

from ltr_sidecar.bench.report import write_result_files
from ltr_sidecar.data.datasets import Example, load_examples
from ltr_sidecar.predictor.ops.evaluate import evaluate
from ltr_sidecar.predictor.runtime.hf import HFRanker, int8_copy
from ltr_sidecar.predictor.runtime.neural import NeuralPredictor

KEYS = ("kendall_tau", "score_ms_p50", "score_ms_p99", "batch_ms_per_request")


def measure(artifact: str, examples: list[Example]) -> dict[str, Any]:
    pred = NeuralPredictor.load(artifact).to("cpu")
    module = pred.module
    if not isinstance(module, HFRanker):
        raise SystemExit(f"{artifact}: not an encoder (hf) artifact")
    row: dict[str, Any] = {"artifact": pred.version, "max_tokens": module.max_tokens}
    module.quantize = "none"
    row["float32"] = {k: evaluate(pred, examples)[k] for k in KEYS}
    module.quantize = "int8"
    for scheme, per_channel in (("int8 per tensor", False), ("int8 per channel", True)):
        module.set_int8(int8_copy(module.backbone, per_channel=per_channel))
        row[scheme] = {k: evaluate(pred, examples)[k] for k in KEYS}
        row[scheme]["tau_change"] = round(row[scheme]["kendall_tau"] - row["float32"]["kendall_tau"], 4)
    return row


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Dynamic int8: per tensor vs per output channel",
        "",
        f"{result['meta']['device']}; data: {result['meta']['data']} (n = {result['meta']['n']}).",
        "",
        "| artifact | tokens | variant | τ | τ change | single p50 ms | single p99 ms | batched ms/request |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        for v in ("float32", "int8 per tensor", "int8 per channel"):
            m = r[v]
            change = f"{m['tau_change']:+.4f}" if "tau_change" in m else "–"
            lines.append(
                f"| {r['artifact']} | {r['max_tokens']} | {v} | {m['kendall_tau']:.4f} | {change} | "
                f"{m['score_ms_p50']:.2f} | {m['score_ms_p99']:.1f} | {m['batch_ms_per_request']:.2f} |"
            )
    lines += ["", f"Run: `{result['meta']['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifacts", nargs="+")
    p.add_argument("--data", required=True)
    p.add_argument("--model-name", default=None)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--name", default="int8-schemes")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    examples = load_examples(args.data, args.model_name)
    rows = []
    for a in args.artifacts:
        print(f"[int8-schemes] {a}", file=sys.stderr, flush=True)
        rows.append(measure(a, examples))
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": f"CPU ({platform.machine()}), 1 torch thread",
        "data": args.data.rsplit("/", 1)[-1],
        "n": len(examples),
        "command": "python benchmarks/int8_schemes.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    result = {"meta": meta, "rows": rows}
    write_result_files(args.out, args.name, result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
