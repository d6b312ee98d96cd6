"""`ltr operator`: run the kopf operator, or `ltr operator render FILE` to print the children.

Run flags (the Helm chart passes them): --standalone | --peering NAME, --liveness URL,
--namespace NS (repeatable) | --all-namespaces, --sidecar-image IMG, --default-engine-image E=IMG
(repeatable), --resync-seconds S, --kubeconfig PATH, --quiet | --verbose | --debug, --log-format.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from ltr_operator.config import OperatorConfig
from ltr_operator.security import OperatorPeer
from ltr_operator.spec import ENGINES


def _engine_image(text: str) -> tuple[str, str]:
    engine, sep, image = text.partition("=")
    if not sep or engine not in ENGINES or not image:
        raise argparse.ArgumentTypeError(
            f"expected ENGINE=IMAGE with ENGINE one of {', '.join(ENGINES)}, got {text!r}"
        )
    return engine, image


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ltr operator", description="Reconcile LTRServing resources (kopf).")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable; globs allowed)",
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch the whole cluster (default)"
    )
    peering = p.add_mutually_exclusive_group()
    peering.add_argument(
        "--standalone",
        action="store_true",
        default=True,
        help="no peering: run exactly one replica (default)",
    )
    peering.add_argument(
        "--peering",
        metavar="NAME",
        help="kopf peering object for several replicas (only one is active at a time)",
    )
    p.add_argument(
        "--liveness", metavar="URL", help="serve liveness at this URL, e.g. http://0.0.0.0:8081/healthz"
    )
    p.add_argument("--sidecar-image", help="sidecar image when spec.sidecar.image is not set")
    p.add_argument(
        "--default-engine-image",
        type=_engine_image,
        action="append",
        default=[],
        metavar="E=IMG",
        help="engine image when spec.model.image is not set, per engine (repeatable)",
    )
    p.add_argument("--resync-seconds", type=float, default=30.0, help="drift repair + status period (30)")
    p.add_argument("--pod-probe-timeout", type=float, default=1.0, help="GetPredictor timeout per pod (1 s)")
    p.add_argument(
        "--admin-token-file",
        help="the sidecars' admin-plane bearer token (the chart mounts a Secret; default: a random token "
        "generated at start, so the sidecars' Secrets change when the operator restarts)",
    )
    p.add_argument(
        "--operator-pod-labels",
        default="",
        metavar="K=V,...",
        help="labels of the operator's own pods: the NetworkPolicy admits them (only) to the admin port",
    )
    p.add_argument(
        "--kubeconfig",
        help="kubeconfig file (default: in-cluster service account, then $KUBECONFIG or ~/.kube/config)",
    )
    level = p.add_mutually_exclusive_group()
    for flag in ("--quiet", "--verbose", "--debug"):
        level.add_argument(flag, action="store_true")
    p.add_argument("--log-format", choices=("json", "plain"), default="json", help="structured logs (json)")
    return p


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message (+ kopf's object reference when present)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if ref:
            entry["object"] = ref
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if args.log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)
    if not args.verbose and not args.debug:
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = OperatorConfig(
            sidecar_image=args.sidecar_image,
            default_engine_images=dict(args.default_engine_image),
            namespaces=tuple(args.namespace),
            resync_seconds=args.resync_seconds,
            pod_probe_timeout_s=args.pod_probe_timeout,
            kubeconfig=args.kubeconfig,
            **admin_settings(args),
        )
    except (ValueError, OSError) as exc:
        print(f"ltr operator: {exc}", file=sys.stderr)
        return 2
    setup_logging(args)
    import kopf  # imported here so `ltr operator render` stays light

    from ltr_operator.handlers import build_registry

    registry = build_registry(cfg)
    try:
        asyncio.run(
            kopf.operator(
                registry=registry,
                standalone=args.peering is None,
                peering_name=args.peering,
                namespaces=list(cfg.namespaces),
                clusterwide=not cfg.namespaces,
                liveness_endpoint=args.liveness,
                identity=operator_identity(),  # type: ignore[arg-type]
            )
        )
    except KeyboardInterrupt:
        return 0
    return 0


def admin_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The admin token (file, else generated) and the operator's own pods as a NetworkPolicy peer."""
    out: dict[str, Any] = {}
    if args.admin_token_file:
        out["admin_token"] = Path(args.admin_token_file).read_text(encoding="utf-8").strip()
    pairs = [kv for kv in args.operator_pod_labels.split(",") if kv.strip()]
    if any("=" not in kv for kv in pairs):
        raise ValueError(f"--operator-pod-labels wants K=V,K=V, got {args.operator_pod_labels!r}")
    labels = dict(kv.strip().split("=", 1) for kv in pairs)
    namespace = os.environ.get("POD_NAMESPACE", "") if labels else ""
    out["operator"] = OperatorPeer(namespace=namespace, pod_labels=labels)
    return out


def operator_identity() -> str:
    """This operator instance's kopf identity: the pod name (downward API), else the host name.

    kopf's default calls getpass.getuser(), which raises for a uid without a passwd entry, e.g. any
    `runAsUser` the image did not create (found on the real control plane: the operator crashed)."""
    import socket

    return os.environ.get("POD_ID") or os.environ.get("POD_NAME") or socket.gethostname()


def render(argv: list[str]) -> int:
    """Print the children the operator would create for an LTRServing manifest (no cluster needed)."""
    from ltr_operator import builders
    from ltr_operator.reconcile import resolve_images
    from ltr_operator.spec import SpecError, parse_spec
    from ltr_operator.status import Problem

    p = argparse.ArgumentParser(prog="ltr operator render", description=render.__doc__)
    p.add_argument("file", type=Path)
    p.add_argument("--namespace", default="default")
    p.add_argument("--sidecar-image")
    p.add_argument("--default-engine-image", type=_engine_image, action="append", default=[])
    args = p.parse_args(argv)
    try:
        obj = yaml.safe_load(args.file.read_text())
        meta = obj["metadata"]
        spec = parse_spec(obj.get("spec"))
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        print(f"ltr operator render: cannot read an LTRServing from {args.file}: {exc}", file=sys.stderr)
        return 2
    except SpecError as exc:
        print("ltr operator render: invalid spec:\n  " + "\n  ".join(exc.problems), file=sys.stderr)
        return 2
    images = resolve_images(
        spec,
        OperatorConfig(
            sidecar_image=args.sidecar_image, default_engine_images=dict(args.default_engine_image)
        ),
    )
    if isinstance(images, Problem):
        print(f"ltr operator render: {images.reason}: {images.message}", file=sys.stderr)
        return 2
    owner = builders.Owner(meta["name"], meta.get("namespace", args.namespace), "<uid>")
    inputs = builders.Inputs(
        images[0], images[1], spec.predictor.version or "", admin_token="generated-by-the-operator"
    )
    print(yaml.safe_dump_all(builders.build_children(owner, spec, inputs), sort_keys=False), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["render"]:
        return render(argv[1:])
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
