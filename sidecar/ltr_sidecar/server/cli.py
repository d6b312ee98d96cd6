"""`ltr sidecar`: run the scheduling sidecar (flags override the config file's keys)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from ltr_sidecar.server.config import POLICY_NAMES, ConfigError, load_config
from ltr_sidecar.server.listener import install_log_rate_limit


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ltr sidecar",
        description="Learning-to-rank scheduling sidecar: gRPC (ltr.v1) + OpenAI-compatible HTTP in front of "
        "an OpenAI-compatible engine. Flags override keys of --config.",
    )
    p.add_argument("--engine-url", help="engine base URL (default http://127.0.0.1:8000)")
    p.add_argument("--config", help="YAML/JSON config file (the operator's sidecar.yaml); polled for changes")
    p.add_argument("--predictor", dest="predictor_dir", help="predictor artifact directory")
    p.add_argument("--predictor-store", help="predictor store root (versions are loaded from here)")
    p.add_argument("--predictor-version", help="predictor version in the store")
    p.add_argument("--policy", choices=POLICY_NAMES, help="queue order (default ltr)")
    p.add_argument("--engine-api", choices=("completions", "chat"), help="engine endpoint for prompts")
    p.add_argument("--model", help="model name sent to the engine (default: ask /v1/models)")
    p.add_argument("--grpc-port", type=int, help="gRPC port (default 50051)")
    p.add_argument("--http-port", type=int, help="HTTP port (default 8080)")
    p.add_argument("--host", help="listen address (default 0.0.0.0)")
    p.add_argument("--admin-port", type=int, help="admin-plane gRPC port, PredictorAdmin (default 50052)")
    p.add_argument("--admin-token-file", help="bearer token file of the admin plane (unset: admin plane off)")
    p.add_argument("--metrics-port", type=int, help="a listener serving only GET /metrics (default off)")
    p.add_argument("--max-prompt-bytes", type=int, help="largest prompt in UTF-8 bytes (default 32768)")
    p.add_argument(
        "--record-prompts",
        action="store_true",
        default=None,
        help="keep prompt text in the trace files (needed for retraining; default off)",
    )
    p.add_argument("--max-concurrency", help="requests admitted to the engine at once: N or auto (default)")
    p.add_argument("--starvation-threshold", help="promote requests waiting longer than this (5s; 0 = off)")
    p.add_argument("--max-queue", type=int, help="queued requests before RESOURCE_EXHAUSTED (default 1024)")
    p.add_argument("--trace-dir", help="record completions for retraining into this directory")
    p.add_argument(
        "--scoring-window-ms",
        type=float,
        help="micro-batch window for scoring concurrent arrivals (default 2; 0 = no wait)",
    )
    p.add_argument("--drain-grace", dest="drain_grace_s", help="SIGTERM drain grace period (default 30s)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Flag values as config keys (None = not given, so the file or default applies)."""
    keys = (
        "engine_url",
        "predictor_dir",
        "predictor_store",
        "predictor_version",
        "policy",
        "engine_api",
        "model",
        "grpc_port",
        "http_port",
        "host",
        "max_concurrency",
        "starvation_threshold",
        "max_queue",
        "trace_dir",
        "admin_port",
        "admin_token_file",
        "metrics_port",
        "max_prompt_bytes",
        "record_prompts",
        "drain_grace_s",
        "scoring_window_ms",
    )
    out = {k: getattr(args, k) for k in keys}
    mc = out["max_concurrency"]
    if mc is not None and mc != "auto":
        out["max_concurrency"] = int(mc) if mc.isdigit() else mc
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    install_log_rate_limit()  # a storm of identical errors (EMFILE, broken clients) must not flood logs
    overrides = overrides_from_args(args)
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"ltr sidecar: invalid configuration: {exc}", file=sys.stderr)
        return 2
    from ltr_sidecar.server.app import SidecarApp

    try:
        asyncio.run(SidecarApp(config, args.config, overrides).run())
    except OSError as exc:
        print(f"ltr sidecar: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
