"""`ltr demo`: FCFS vs LTR on a real (tiny, CPU) engine behind the real sidecar, in a few minutes.

Builds a tiny random-initialised Llama, starts `transformers serve --continuous-batching` on
127.0.0.1, loads the bundled predictor, and replays the shipped held-out sample (package data
`ltr_sidecar/data/sample/`, permissively licensed) through the sidecar under FCFS and then LTR.
Prints the comparison table and writes it, a JSON file and a latency CDF plot to ./demo-out/.
Needs no network and no ../shared.
Ctrl-C (or SIGTERM) stops everything: engine process, sidecar, temporary files.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ltr_sidecar.bench import cli as bench_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ltr demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", default="demo-out", help="output folder (default demo-out)")
    p.add_argument("--requests", type=int, default=80, help="requests replayed per policy (default 80)")
    p.add_argument("--rate", type=float, default=8.0, help="Poisson arrival rate, req/s (default 8)")
    p.add_argument("--max-concurrency", type=int, default=3, help="sidecar admission limit (default 3)")
    p.add_argument(
        "--max-output-tokens", type=int, default=512, help="cap on replayed output lengths (default 512)"
    )
    p.add_argument("--policies", default="fcfs,ltr", help="policies to compare (default fcfs,ltr)")
    p.add_argument("--small", action="store_true", help="a quick smoke run (16 requests)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.requests < 1 or args.rate <= 0 or args.max_concurrency < 1:
        print("ltr demo: error: --requests, --rate and --max-concurrency must be positive", file=sys.stderr)
        return 2
    from ltr_sidecar.predictor.runtime.registry import bundled_predictor_path

    out = Path(args.out_dir)
    bench_argv = [
        "--engine",
        "local",
        "--policies",
        args.policies,
        "--requests",
        str(16 if args.small else args.requests),
        "--rate",
        str(args.rate),
        "--max-concurrency",
        str(args.max_concurrency),
        "--max-output-tokens",
        str(args.max_output_tokens),
        "--predictor",
        str(bundled_predictor_path()),
        "--out-dir",
        str(out),
        "--name",
        "demo",
        "--json",
        str(out / "demo.json"),
    ]
    if "classifier" in args.policies:
        bench_argv += ["--cache-dir", str(out / ".cache")]
    started = time.perf_counter()
    print(
        "ltr demo: tiny CPU engine + LTR sidecar, replaying the shipped held-out sample "
        f"under {args.policies.replace(',', ', ')} (progress below)",
        flush=True,
    )
    code = bench_cli.main(bench_argv)  # handles Ctrl-C / SIGTERM: everything is stopped and removed
    if code == 0:
        print(
            f"ltr demo: done in {time.perf_counter() - started:.0f}s. Table: {out / 'demo.md'}, "
            f"plot: {out / 'demo-cdf.png'}, JSON: {out / 'demo.json'}"
        )
    return code
