"""Predictor benchmark (thin wrapper): see `ltr_sidecar.bench.predictor_bench` or `ltr bench predictor`.

Usage: python benchmarks/predictor.py [--data-root SHARED_DATA] [--predictors fast,minilm,...]
"""

import sys

from ltr_sidecar.bench.predictor_bench import main

if __name__ == "__main__":
    sys.exit(main())
