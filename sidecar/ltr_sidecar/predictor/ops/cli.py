"""`ltr predictor train|eval|score|retrain|list|calibrate|optimize`.

Exit codes: 0 ok; 1 error (bad data/artifact/arguments, message on stderr); 2 usage;
retrain: 3 insufficient data, 4 rejected by the quality gate (see retrain.py)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ltr.contract import parse_duration
from ltr_sidecar.data.datasets import DataError, load_many
from ltr_sidecar.predictor.ops.options import RetrainOptions, TrainOptions
from ltr_sidecar.predictor.runtime.artifact import PredictorLoadError
from ltr_sidecar.predictor.runtime.base import Predictor, PromptLengthPredictor, RandomPredictor
from ltr_sidecar.predictor.runtime.registry import bundled_predictor_path, load_predictor
from ltr_sidecar.predictor.runtime.store import StoreError

BUILTIN = ("prompt-length", "random", "bundled")


def resolve_predictor(spec: str) -> Predictor:
    """A predictor from a directory or a built-in name (prompt-length, random, bundled)."""
    if spec == "prompt-length":
        return PromptLengthPredictor()
    if spec == "random":
        return RandomPredictor()
    if spec == "bundled":
        return load_predictor(bundled_predictor_path())
    return load_predictor(spec)


def _add_train_args(p: argparse.ArgumentParser, retrain: bool = False) -> None:
    p.add_argument(
        "--backbone",
        default=None,
        help="auto | fast | minilm | a local HF model dir; auto (default): "
        + (
            "the current version fine-tuned, a fresh fast ranker and, within --time-budget, an encoder "
            "compete on validation tau"
            if retrain
            else "the measured best (minilm when installed, else fast)"
        ),
    )
    p.add_argument(
        "--objective",
        choices=("listmle", "classify"),
        default="listmle",
        help="listmle (ranking) or classify (S3-like length-bucket baseline)",
    )
    p.add_argument("--list-size", type=int, default=None, help="ListMLE list size (default 32)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bucket", type=float, default=10.0, help="label bucket width in length units (0 = raw)")
    p.add_argument("--num-classes", type=int, default=10, help="classes for --objective classify")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--pooling", choices=("mean", "cls", "last"), default="mean", help="HF backbones")
    p.add_argument("--max-input", type=int, default=None, help="max input tokens (HF) or chars (fast)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument(
        "--fast-buckets", type=int, default=None, help="fast ranker: hash buckets (default 262144)"
    )
    p.add_argument("--fast-dim", type=int, default=None, help="fast ranker: embedding size (default 16)")
    p.add_argument(
        "--time-budget",
        type=_budget,
        default=None,
        help="wall-clock limit for training, a duration such as 90s or 5m: training stops in time and "
        "keeps the best validated state (default: none)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _budget(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the time budget must be positive")
    return seconds


def cmd_train(args: argparse.Namespace) -> int:
    from ltr_sidecar.predictor.training.pipeline import train_predictor

    examples = load_many(args.data, args.model_name)
    spec = TrainOptions.from_args(args).to_spec(args.version or Path(args.out).name)
    pretrain = None
    if args.consensus_from:
        from ltr_sidecar.data.datasets import alpaca_all_model_lengths
        from ltr_sidecar.predictor.training.consensus import consensus_keys, similar_models

        _, all_lengths = alpaca_all_model_lengths(args.consensus_from)
        ids = [e.prompt_id for e in examples if e.prompt_id]
        models = None
        if args.consensus_top_k:
            if not args.model_name:
                raise ValueError("--consensus-top-k needs --model-name (the target model)")
            models = similar_models(all_lengths, args.model_name, ids, args.consensus_top_k)
        cons = consensus_keys(all_lengths, ids, exclude=args.model_name, models=models)
        known = [e for e in examples if e.prompt_id in cons]
        if not known:
            raise DataError(
                f"--consensus-from {args.consensus_from}: no prompt ids shared with the training data"
            )
        pretrain = ([e.prompt for e in known], [cons[e.prompt_id] for e in known if e.prompt_id])
    if not args.quiet:
        print(
            f"training {spec.backbone}/{spec.objective} on {len(examples)} examples"
            + (f", pre-training on {len(pretrain[0])} consensus keys" if pretrain else ""),
            file=sys.stderr,
        )
    pred, result = train_predictor(examples, spec, pretrain_targets=pretrain, length_unit=args.length_unit)
    pred.save(
        args.out, extra={"data_sources": [Path(d).name for d in args.data], "model_name": args.model_name}
    )
    summary = {
        "out": str(args.out),
        "version": pred.version,
        "backbone": pred.backbone,
        "val_kendall_tau": result.best_val_tau,
        "epochs": result.epochs_run,
        "train_seconds": round(result.seconds, 2),
        "train_samples": pred.meta["train_samples"],
    }
    print(json.dumps(summary))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ltr_sidecar.predictor.ops.evaluate import evaluate

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    predictor = resolve_predictor(args.predictor)
    examples = load_many(args.data, args.model_name)
    result = evaluate(predictor, examples, with_latency=not args.no_latency)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    predictor = resolve_predictor(args.predictor)
    prompts: list[str] = []
    for n, line in enumerate(sys.stdin, 1):
        line = line.rstrip("\n")
        if args.jsonl:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                prompts.append(str(obj["prompt"]))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"stdin line {n}: expected a JSON object with 'prompt' ({exc})") from exc
        else:
            prompts.append(line.replace("\\n", "\n"))
    for i in range(0, len(prompts), 256):
        for s in predictor.score(prompts[i : i + 256]):
            print(f"{s:.6f}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ltr_sidecar.predictor.runtime.store import open_store

    versions = open_store(args.store).list_versions()
    if args.json:
        print(json.dumps([v.as_dict() for v in versions]))
    else:
        for v in versions:
            tau = "-" if v.val_kendall_tau is None else f"{v.val_kendall_tau:.4f}"
            print(f"{v.version}\t{v.backbone}\tval_tau={tau}\tparent={v.parent or '-'}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from ltr_sidecar.predictor.ops.retrain import run_retrain

    return run_retrain(RetrainOptions.from_args(args))


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ltr_sidecar.predictor.ops.calibrate import calibrate_artifact

    examples = load_many(args.data, args.model_name)
    report = calibrate_artifact(args.artifact, examples, unit=args.unit, max_knots=args.max_knots)
    print(json.dumps(report.as_dict(str(args.artifact))))
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    from ltr_sidecar.predictor.ops.optimize import compare, optimize_artifact

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    manifest = optimize_artifact(
        args.artifact, args.out, quantize=args.quantize, max_tokens=args.max_input, version=args.version
    )
    report: dict[str, object] = {"out": args.out, "version": manifest["version"]}
    if args.data:
        report.update(compare(args.artifact, args.out, load_many(args.data, args.model_name)))
    print(json.dumps(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ltr predictor",
        description="Output-length ranking predictors (a higher score means a shorter expected output).",
    )
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a predictor artifact")
    p.add_argument("--data", action="append", required=True, help="JSONL file or dataset dir (repeatable)")
    p.add_argument("--model-name", default=None, help="select one model's lengths (e.g. AlpacaEval)")
    p.add_argument("--out", required=True, help="artifact directory to write")
    p.add_argument(
        "--version", default=None, help="version recorded in predictor.json (default: out dir name)"
    )
    p.add_argument(
        "--consensus-from",
        default=None,
        metavar="ALPACA_DIR",
        help="pre-train on the consensus length of all other models in this AlpacaEval-layout dir",
    )
    p.add_argument(
        "--consensus-top-k",
        type=int,
        default=0,
        help="with --consensus-from: only the K models ranking the training prompts most like --model-name",
    )
    p.add_argument(
        "--length-unit",
        choices=("words", "tokens"),
        default="words",
        help="what the data's lengths count, for the stored score -> length calibration",
    )
    _add_train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="Kendall tau-b and latency of a predictor on data")
    p.add_argument("--predictor", required=True, help=f"artifact dir or one of {', '.join(BUILTIN)}")
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--model-name", default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("score", help="score prompts from stdin (one per line; '\\n' escapes newlines)")
    p.add_argument("--predictor", required=True, help=f"artifact dir or one of {', '.join(BUILTIN)}")
    p.add_argument("--jsonl", action="store_true", help="stdin is JSONL with a 'prompt' field")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("list", help="list versions in a predictor store")
    p.add_argument("--store", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("retrain", help="retrain from sidecar traces and publish a gated new version")
    p.add_argument("--traces", required=True, help="directory of trace JSONL files (rotated files included)")
    p.add_argument("--store", required=True, help="predictor store directory (or file:// URI)")
    p.add_argument(
        "--window",
        default="24h",
        help="only traces newer than this Go duration (e.g. 30m, 24h, 168h; 0 = all)",
    )
    p.add_argument("--min-samples", type=int, default=200)
    p.add_argument("--base", default=None, help="version to fine-tune from (default: latest; 'none' = fresh)")
    p.add_argument("--min-kendall-tau", type=float, default=0.0, help="gate: candidate tau must reach this")
    p.add_argument("--holdout-fraction", type=float, default=0.2, help="newest fraction held out")
    p.add_argument("--version", default=None, help="version name to publish (default: next vN)")
    p.add_argument("--keep", type=int, default=0, help="retention: keep N newest versions (0 = keep all)")
    p.add_argument("--protect", action="append", default=[], help="versions retention must keep")
    p.add_argument("--model-name", default=None, help="only traces of this model")
    p.add_argument("--result-file", default=None, help="also write the JSON result here")
    p.add_argument(
        "--report-configmap",
        default=None,
        metavar="NS/NAME",
        help="write the result into ConfigMap NS/NAME, key result.json (what the operator reads)",
    )
    p.add_argument(
        "--encoder",
        default=None,
        help="the encoder --backbone auto may choose when the time budget allows: minilm | an HF model "
        "dir | none (default: minilm when its package is installed)",
    )
    p.add_argument("--now", type=float, default=None, help=argparse.SUPPRESS)
    _add_train_args(p, retrain=True)
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser(
        "calibrate",
        help="fit score -> expected output length on data and store it in the artifact's manifest",
    )
    p.add_argument("artifact", metavar="ARTIFACT_DIR", help="predictor artifact directory (rewritten)")
    p.add_argument("--data", action="append", required=True, help="JSONL file or dataset dir (repeatable)")
    p.add_argument("--model", "--model-name", dest="model_name", default=None, help="one model's lengths")
    p.add_argument(
        "--unit",
        choices=("words", "tokens"),
        default="words",
        help="what the data's lengths count (words: converted to tokens when serving)",
    )
    p.add_argument("--max-knots", type=int, default=64, help="at most this many knots in the manifest")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser(
        "optimize",
        help="derive a CPU-cheap encoder artifact (int8, shorter input); report tau and latency change",
    )
    p.add_argument("artifact", metavar="ARTIFACT_DIR", help="an hf (encoder) predictor artifact")
    p.add_argument("--out", required=True, help="directory of the derived artifact (must not exist)")
    p.add_argument("--quantize", choices=("int8", "none"), default="int8", help="load-time weight format")
    p.add_argument("--max-input", type=int, default=None, help="new max input tokens (default: keep)")
    p.add_argument("--version", default=None, help="version of the derived artifact (default: derived)")
    p.add_argument("--data", action="append", default=[], help="measure tau/latency before and after on this")
    p.add_argument("--model-name", default=None)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for the latency (default 1)")
    p.set_defaults(func=cmd_optimize)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args))
    except (DataError, PredictorLoadError, StoreError, ValueError, OSError) as exc:
        print(f"ltr predictor {args.cmd}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
