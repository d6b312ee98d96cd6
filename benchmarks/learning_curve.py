"""Learning-curve benchmark (thin wrapper): see `ltr_sidecar.bench.learning_curve` or
`ltr bench learning-curve`.

Usage: python benchmarks/learning_curve.py [--data-root DIR] [--families fast,minilm] [--sizes 0,100,...]
"""

import sys

from ltr_sidecar.bench.learning_curve import main

if __name__ == "__main__":
    sys.exit(main())
