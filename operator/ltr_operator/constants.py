"""Names shared by the CRD, the builders and the handlers."""

from __future__ import annotations

GROUP = "ltrserving.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LTRServing"
PLURAL = "ltrservings"

MANAGED_BY = "ltr-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_OWNER = f"{GROUP}/ltrserving"  # the owning LTRServing's name, on every child and pod

ANNOTATION_CHECKSUM = f"{GROUP}/config-checksum"  # pod template: config minus predictor_version
ANNOTATION_RETRAIN_RESULT = f"{GROUP}/retrain-result"  # JSON written by `ltr predictor retrain`

CONFIG_KEY = "sidecar.yaml"
CONFIG_DIR = "/etc/ltr"
STORE_MOUNT = "/var/lib/ltr"
PREDICTOR_DIR = f"{STORE_MOUNT}/predictors"
TRACE_DIR = f"{STORE_MOUNT}/traces"

# Condition types (metav1.Condition).
READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
PREDICTOR_READY = "PredictorReady"
CONDITION_TYPES = (READY, PROGRESSING, DEGRADED, PREDICTOR_READY)
