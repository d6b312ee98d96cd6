"""Predictor benchmark (thin wrapper): see `ltr_sidecar.predictor.benchmark` or `ltr bench predictor`.

Usage: python benchmarks/predictor.py [--data-root SHARED_DATA] [--predictors fast,minilm,...]
"""

import sys

from ltr_sidecar.predictor.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
