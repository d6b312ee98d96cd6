"""Operator-side names. The CRD's identity, labels, annotations and mount paths are `ltr.contract`'s
(re-exported here so the operator's modules read `c.NAME`); only the condition types are its own."""

from __future__ import annotations

from ltr.contract import (
    ANNOTATION_CHECKSUM,
    ANNOTATION_PROMOTED,
    API_VERSION,
    CONFIG_DIR,
    CONFIG_KEY,
    GROUP,
    KIND,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_OWNER,
    MANAGED_BY,
    PLURAL,
    PREDICTOR_DIR,
    RETRAIN_RESULT_KEY,
    STORE_MOUNT,
    TRACE_DIR,
    VERSION,
)

__all__ = [
    "ANNOTATION_CHECKSUM",
    "ANNOTATION_PROMOTED",
    "API_VERSION",
    "CONDITION_TYPES",
    "CONFIG_DIR",
    "CONFIG_KEY",
    "DEGRADED",
    "GROUP",
    "KIND",
    "LABEL_COMPONENT",
    "LABEL_INSTANCE",
    "LABEL_MANAGED_BY",
    "LABEL_NAME",
    "LABEL_OWNER",
    "MANAGED_BY",
    "PLURAL",
    "PREDICTOR_DIR",
    "PREDICTOR_READY",
    "PROGRESSING",
    "READY",
    "RETRAIN_RESULT_KEY",
    "STORE_MOUNT",
    "TRACE_DIR",
    "VERSION",
]

# Condition types (metav1.Condition).
READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
PREDICTOR_READY = "PredictorReady"
CONDITION_TYPES = (READY, PROGRESSING, DEGRADED, PREDICTOR_READY)
