"""`python -m tests.support.cluster build|up|down|status|agent` (the Makefile's cluster targets)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tests.support.cluster import cluster, controlplane, procs, tools


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.support.cluster", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    bp = sub.add_parser("build", help="build the control-plane binary into .tools/bin (when stale)")
    bp.add_argument(
        "--force", action="store_true", help="rebuild even when the binary is newer than its sources"
    )
    bp.add_argument(
        "--optional",
        action="store_true",
        help="without Go, warn and succeed (the cluster tier then skips loudly), except under CI=true",
    )
    for name in ("up", "down", "status"):
        sp = sub.add_parser(name)
        sp.add_argument("--dir", type=Path, default=cluster.DEFAULT_STATE, help="state directory (.cluster)")
        if name == "up":
            sp.add_argument("--engine", default="scripted", choices=["scripted", "none"])
    ag = sub.add_parser("agent", help="run the test node agent (started by `up`)")
    ag.add_argument("state", type=Path)
    args = p.parse_args(argv)
    try:
        if args.cmd == "build":
            if args.optional and tools.find_go() is None and os.environ.get("CI", "").lower() != "true":
                print(
                    "WARNING: no Go >= 1.26 here: the control plane is not built and the cluster tier "
                    "will be SKIPPED (install Go to run it; under CI=true this is a failure)",
                    file=sys.stderr,
                )
            elif args.force or tools.is_stale():
                tools.build()
            else:
                print(f"{tools.BINARY} is up to date ({tools.binary_version()})", file=sys.stderr)
        elif args.cmd == "up":
            c = cluster.up(args.dir, engine=args.engine)
            r = c.record
            print(
                f"control plane ready in {r['control_plane_ready_s']}s (kube-apiserver /readyz in "
                f"{r['apiserver_ready_s']}s), nodes Ready, up in {r['up_s']}s",
                file=sys.stderr,
            )
            print(c.kubeconfig.resolve())
        elif args.cmd == "down":
            cluster.down(args.dir)
            print(f"stopped the cluster at {args.dir} and removed it", file=sys.stderr)
        elif args.cmd == "status":
            record = controlplane.load(args.dir)
            if record is None:
                print(f"no cluster at {args.dir}")
                return 1
            pids = {name: (pid, procs.alive(pid)) for name, pid in procs.recorded(args.dir).items()}
            print(
                json.dumps(
                    {
                        "server": record["server"],
                        "kubeconfig": str((args.dir / "kubeconfig").resolve()),
                        "processes": {n: {"pid": p, "alive": a} for n, (p, a) in pids.items()},
                    },
                    indent=2,
                )
            )
            return 0 if all(a for _, a in pids.values()) else 1
        elif args.cmd == "agent":
            from tests.support.cluster import nodeagent

            return nodeagent.main(args.state)
    except (tools.ToolError, controlplane.ClusterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
