"""The `ltr` command: a thin dispatcher to each part's own command-line module.

Each subcommand names a module exposing `main(argv: list[str]) -> int`. Modules are
imported only when their subcommand runs, so `ltr --help` stays fast (no torch import).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ltr import __version__

# name -> (module with main(argv), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "predictor": (
        "ltr_sidecar.predictor.ops.cli",
        "train, evaluate, score, calibrate, optimize and retrain length predictors",
    ),
    "sidecar": ("ltr_sidecar.server.cli", "run the scheduling sidecar (gRPC + OpenAI-compatible HTTP)"),
    "operator": ("ltr_operator.cli", "run the kopf operator that reconciles LTRServing resources"),
    "bench": ("ltr_sidecar.bench.cli", "replay benchmark (real engine or simulator), predictor benchmark"),
    "demo": ("ltr_sidecar.bench.demo", "one-command demo: tiny engine + sidecar, FCFS vs LTR"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ltr",
        description="ltr-serving: learning-to-rank LLM request scheduling.",
    )
    parser.add_argument("--version", action="version", version=f"ltr-serving {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 2
    if argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help / errors for unknown commands
        return 2
    name, rest = argv[0], argv[1:]
    module_name, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"ltr {name}: not implemented yet", file=sys.stderr)
            return 2
        raise
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
