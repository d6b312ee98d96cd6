"""Print the pip requirements of one container image, taken from pyproject.toml (no second copy).

The operator image must not pull torch (the operator never imports it), so it installs the project
with `--no-deps` plus only the distributions listed in OPERATOR_DISTRIBUTIONS, at the exact
specifiers pyproject.toml declares. The sidecar image installs torch from the PyTorch CPU (or CUDA)
index first, then everything else from pyproject.toml.

Usage: python scripts/image_requirements.py {operator|sidecar} [--pyproject FILE]
Reads pyproject.toml with the standard library only (tomllib), so it runs in a bare python image.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

# Distributions the operator process imports (ltr.cli + ltr_operator: kopf, the project's Kubernetes
# client ltr.kube on kubernetes_asyncio, gRPC to the sidecars); tests/chart checks this set against the
# operator's actual imports.
OPERATOR_DISTRIBUTIONS: frozenset[str] = frozenset(
    {"kopf", "pyyaml", "aiohttp", "kubernetes-asyncio", "grpcio", "protobuf"}
)
# Installed separately in the sidecar image, from the PyTorch wheel index chosen at build time.
SIDECAR_EXCLUDED: frozenset[str] = frozenset({"torch"})
IMAGES = ("operator", "sidecar")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """Distribution name of a PEP 508 requirement string."""
    match = _NAME.match(requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalize(match.group(1))


def dependencies(pyproject: Path) -> list[str]:
    """The [project] dependencies of a pyproject.toml."""
    with pyproject.open("rb") as fh:
        data = tomllib.load(fh)
    try:
        return list(data["project"]["dependencies"])
    except KeyError as exc:
        raise ValueError(f"{pyproject}: no [project] dependencies") from exc


def image_requirements(image: str, deps: list[str]) -> list[str]:
    """Requirements (pyproject's own specifiers) that image installs besides the project itself."""
    by_name = {requirement_name(d): d for d in deps}
    if image == "operator":
        missing = sorted(OPERATOR_DISTRIBUTIONS - by_name.keys())
        if missing:
            raise ValueError(f"operator distributions missing from pyproject dependencies: {missing}")
        return [by_name[n] for n in sorted(OPERATOR_DISTRIBUTIONS)]
    if image == "sidecar":
        return [d for n, d in by_name.items() if n not in SIDECAR_EXCLUDED]
    raise ValueError(f"unknown image {image!r} (choose from {', '.join(IMAGES)})")


def pinned(name: str, deps: list[str]) -> str:
    """The specifier pyproject.toml gives one distribution, e.g. '==2.13.0' for torch."""
    for dep in deps:
        if requirement_name(dep) == normalize(name):
            return dep[len(_NAME.match(dep).group(1)) :].strip()
    raise ValueError(f"{name} is not a pyproject dependency")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", choices=IMAGES)
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    args = parser.parse_args(argv)
    try:
        reqs = image_requirements(args.image, dependencies(args.pyproject))
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"image_requirements: {exc}", file=sys.stderr)
        return 1
    print("\n".join(reqs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
