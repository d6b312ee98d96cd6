"""ltr-serving: learning-to-rank scheduling for LLM serving on Kubernetes.

This top-level package holds the `ltr` command line and the generated gRPC API
(`ltr.v1`). The sidecar lives in `ltr_sidecar`, the operator in `ltr_operator`.
"""

__version__ = "0.1.0"
