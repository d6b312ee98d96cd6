"""Encoder scoring on one CPU core: batched ms/request by batch shape (prompts per forward pass x padded
tokens per forward pass), side by side in one process, cells interleaved over rounds (median reported).

The predictor is a MiniLM encoder at 128 input tokens, int8 per output channel (what `retrain --backbone
auto` trains for CPU pods); weights do not change the cost, so a fresh one is used unless `--artifact`.
Scores of every shape are compared with one-prompt-at-a-time scoring: dynamic int8 quantises
activations per forward pass, so batch mates can move a prompt's score.

Usage: python benchmarks/batch_shape.py --data DIR_OR_JSONL [--model-name M] [--n 400] [--rounds 3]
       [--artifact DIR] [--out benchmarks/results] [--name batch-shape]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from typing import Any

import torch

from ltr_sidecar.bench.report import write_result_files
from ltr_sidecar.data.datasets import Example, load_examples
from ltr_sidecar.predictor.runtime.hf import HFRanker
from ltr_sidecar.predictor.runtime.neural import TOKENS_PER_BATCH, NeuralPredictor
from ltr_sidecar.predictor.training.pipeline import TrainSpec, build_predictor
from ltr_sidecar.stats import kendall_tau_b

BATCH_SIZES = (8, 16, 32, 64)
TOKEN_BUDGETS = (512, 1024, 2048, 4096)
CALL = 64  # prompts per score() call, as `evaluate` measures "batched"


def predictor(artifact: str | None) -> NeuralPredictor:
    if artifact:
        pred = NeuralPredictor.load(artifact).to("cpu")
        if not isinstance(pred.module, HFRanker):
            raise SystemExit(f"{artifact}: not an encoder (hf) artifact")
        pred.module.quantize = "int8"  # served int8 on CPU, per channel (hf.int8_copy)
        return pred
    spec = TrainSpec(backbone="minilm", max_input=128, quantize="int8", device="cpu")
    return build_predictor(spec, out_dim=1)


def batched_ms(pred: NeuralPredictor, prompts: list[str]) -> tuple[float, list[float]]:
    t = time.perf_counter()
    scores: list[float] = []
    for i in range(0, len(prompts), CALL):
        scores += pred.score(prompts[i : i + CALL])
    return (time.perf_counter() - t) * 1000 / len(prompts), scores


def run(pred: NeuralPredictor, examples: list[Example], rounds: int) -> dict[str, Any]:
    prompts, lengths = [e.prompt for e in examples], [e.length for e in examples]
    pred.batch_size = 1
    single = [pred.score([p])[0] for p in prompts]
    cells = [(b, t) for b in BATCH_SIZES for t in TOKEN_BUDGETS]
    times: dict[tuple[int, int], list[float]] = {c: [] for c in cells}
    scores: dict[tuple[int, int], list[float]] = {}
    for r in range(rounds):
        for c in cells if r % 2 == 0 else reversed(cells):  # alternate order: drift hits every cell
            pred.batch_size, pred.tokens_per_batch = c
            ms, scores[c] = batched_ms(pred, prompts)
            times[c].append(ms)
        print(f"[batch-shape] round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    rows = []
    for b, t in cells:
        s = scores[(b, t)]
        rows.append(
            {
                "batch_size": b,
                "tokens_per_batch": t,
                "ms_per_request": round(statistics.median(times[(b, t)]), 3),
                "ms_rounds": [round(x, 3) for x in times[(b, t)]],
                "max_abs_score_change": round(max(abs(x - y) for x, y in zip(s, single, strict=True)), 5),
                "tau_vs_single": round(kendall_tau_b(s, single), 4),
                "tau": round(-kendall_tau_b(s, lengths), 4),
            }
        )
    return {"rows": rows, "single_tau": round(-kendall_tau_b(single, lengths), 4)}


def markdown(result: dict[str, Any]) -> str:
    m = result["meta"]
    lines = [
        "# Encoder scoring by batch shape (one CPU core)",
        "",
        f"{m['device']}; {m['predictor']}; {m['n']} prompts of {m['data']} scored in calls of {CALL}, "
        f"{m['rounds']} interleaved rounds (median). Current default: batch_size 64, "
        f"tokens_per_batch {TOKENS_PER_BATCH}. τ vs single: Kendall τ-b between the batched scores and "
        "one-prompt-at-a-time scores of the same predictor; τ: against the true lengths (a higher score "
        f"means shorter), one prompt at a time: {result['single_tau']:.4f}.",
        "",
        "| batch | padded tokens / pass | ms / request | rounds | max abs score change | τ vs single | τ |",
        "|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in result["rows"]:
        rounds = ", ".join(f"{x:.2f}" for x in r["ms_rounds"])
        lines.append(
            f"| {r['batch_size']} | {r['tokens_per_batch']} | {r['ms_per_request']:.2f} | {rounds} | "
            f"{r['max_abs_score_change']:.4f} | {r['tau_vs_single']:.4f} | {r['tau']:.4f} |"
        )
    lines += ["", f"Run: `{m['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model-name", default=None)
    p.add_argument("--artifact", default=None)
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--name", default="batch-shape")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    examples = load_examples(args.data, args.model_name)[: args.n]
    pred = predictor(args.artifact)
    result = run(pred, examples, args.rounds)
    result["meta"] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": f"CPU ({platform.machine()}), 1 torch thread",
        "predictor": args.artifact or "fresh MiniLM, 128 tokens, int8 per channel",
        "data": args.data.rstrip("/").rsplit("/", 1)[-1],
        "n": len(examples),
        "rounds": args.rounds,
        "command": "python benchmarks/batch_shape.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    write_result_files(args.out, args.name, result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
