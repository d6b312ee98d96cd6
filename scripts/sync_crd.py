"""Keep the Helm chart's CRD identical to crds/ltrserving.yaml (the single source of truth).

Usage:
  python scripts/sync_crd.py          copy crds/*.yaml into charts/ltr-serving/crds/
  python scripts/sync_crd.py --check  exit 1 (with a diff) when the chart's copy differs or is stale
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = REPO_ROOT / "crds"
CHART_CRD_DIR = REPO_ROOT / "charts" / "ltr-serving" / "crds"


def crd_pairs(source_dir: Path = SOURCE_DIR, chart_dir: Path = CHART_CRD_DIR) -> list[tuple[Path, Path]]:
    """(source, chart copy) for every CRD file; raises FileNotFoundError when there is none."""
    sources = sorted(source_dir.glob("*.yaml"))
    if not sources:
        raise FileNotFoundError(f"no CRD files in {source_dir}")
    return [(src, chart_dir / src.name) for src in sources]


def drift(source_dir: Path = SOURCE_DIR, chart_dir: Path = CHART_CRD_DIR) -> list[str]:
    """Human-readable differences between the CRD sources and the chart's copies (empty = in sync)."""
    problems: list[str] = []
    pairs = crd_pairs(source_dir, chart_dir)
    for src, dst in pairs:
        if not dst.exists():
            problems.append(f"{dst} is missing")
            continue
        a, b = src.read_text().splitlines(keepends=True), dst.read_text().splitlines(keepends=True)
        if a != b:
            problems.append("".join(difflib.unified_diff(a, b, str(src), str(dst))))
    expected = {dst.name for _, dst in pairs}
    problems += [
        f"{extra} has no source in {source_dir}"
        for extra in sorted(chart_dir.glob("*.yaml"))
        if extra.name not in expected
    ]
    return problems


def sync(source_dir: Path = SOURCE_DIR, chart_dir: Path = CHART_CRD_DIR) -> list[Path]:
    """Copy every CRD source into the chart, remove stale copies; returns the files written."""
    chart_dir.mkdir(parents=True, exist_ok=True)
    pairs = crd_pairs(source_dir, chart_dir)
    for src, dst in pairs:
        dst.write_text(src.read_text())
    keep = {dst.name for _, dst in pairs}
    for stale in chart_dir.glob("*.yaml"):
        if stale.name not in keep:
            stale.unlink()
    return [dst for _, dst in pairs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sync the chart's CRDs from crds/.")
    parser.add_argument("--check", action="store_true", help="only report drift; exit 1 when found")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = drift()
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                print("chart CRDs out of date: run `python scripts/sync_crd.py`", file=sys.stderr)
                return 1
            print("chart CRDs match crds/")
            return 0
        for written in sync():
            print(f"wrote {written.relative_to(REPO_ROOT)}")
        return 0
    except (FileNotFoundError, OSError) as exc:
        print(f"sync_crd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
