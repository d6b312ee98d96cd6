"""Sidecar overhead benchmark (thin wrapper): see `ltr_sidecar.bench.overhead`.

Usage: python benchmarks/sidecar_overhead.py [--quick] [--ttft-requests 300] [--streams 32] ...
Writes benchmarks/results/sidecar_overhead.{json,md} (unless --out says otherwise).
"""

import sys
from pathlib import Path

from ltr_sidecar.bench.overhead import main

if __name__ == "__main__":
    sys.exit(main(["--out", str(Path(__file__).resolve().parent / "results"), *sys.argv[1:]]))
