"""What crosses process boundaries, defined once: imported by the operator, the sidecar and the retrain job.

Standard library only (the operator image has no torch). Nothing here may import another project module.

**Score convention** (the one place it is stated): a predictor's score is a *rank* key where a HIGHER score
means a SHORTER expected output. The scheduler serves the highest score first; Kendall τ is computed
between ``-score`` and the actual output length (+1 = perfect order).
"""

from __future__ import annotations

import enum
import math
import re

# -- the LTRServing custom resource ---------------------------------------------------------------------
GROUP = "ltrserving.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LTRServing"
PLURAL = "ltrservings"
SHORT_NAME = "ltrs"

# -- labels and annotations ------------------------------------------------------------------------------
MANAGED_BY = "ltr-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_OWNER = f"{GROUP}/ltrserving"  # the owning LTRServing's name, on every child and pod
ANNOTATION_CHECKSUM = f"{GROUP}/config-checksum"  # pod template: config minus predictor_version
ANNOTATION_PROMOTED = f"{GROUP}/promoted-version"  # the operator's promotion record

# -- the sidecar's config file and mounts (written by the operator, read by the sidecar) -----------------
CONFIG_KEY = "sidecar.yaml"
CONFIG_DIR = "/etc/ltr"
STORE_MOUNT = "/var/lib/ltr"
PREDICTOR_DIR = f"{STORE_MOUNT}/predictors"
TRACE_DIR = f"{STORE_MOUNT}/traces"

# -- the retrain job's report: JSON under this key of ConfigMap <name>-retrain-result, the one object ----
# -- the job's Role may write (get/patch/update on that name); the operator reads it ------------------
RETRAIN_RESULT_KEY = "result.json"

# -- retrain job exit codes (the CronJob's pods report them besides the result) -------------------------
EXIT_PUBLISHED, EXIT_ERROR, EXIT_INSUFFICIENT, EXIT_REJECTED = 0, 1, 3, 4


class Outcome(enum.StrEnum):
    """How a request ended: the `outcome` label of `ltr_requests_total` (all exported from the start)."""

    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"
    REJECTED_FULL = "rejected_full"
    INVALID = "invalid"
    DEADLINE = "deadline"
    UNAVAILABLE = "unavailable"


# -- durations: the Go grammar the CRD states --------------------------------------------------------------
#: The CRD's pattern for a duration field (non-negative Go duration; "0" is allowed where noted).
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a non-negative Go duration: "250ms", "90s", "1h30m", "0"; ValueError otherwise.

    The only duration parser of the project (CRD fields, sidecar config, retrain `--window`)."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration string such as 5s, 250ms or 1h30m")
    s = text.strip()
    if s == "0":
        return 0.0
    parts = _DURATION_PART.findall(s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise ValueError(
            f"{text!r} is not a duration such as 5s, 250ms or 1h30m (Go duration units: ns, us, ms, s, m, h)"
        )
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is too large a duration")
    return seconds


def format_duration(seconds: float) -> str:
    """A duration string `parse_duration` reads back exactly enough: "90s", "0.25s", "0"."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"a duration must be finite and >= 0, got {seconds!r}")
    if seconds == 0:
        return "0"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.9f}".rstrip("0") + "s"
