"""Output-length ranking predictors (Fu et al., NeurIPS 2024): interface, models, training, store.

Score convention: HIGHER score = SHORTER expected output. Heavy modules (torch, transformers) are
imported only by the submodules that need them; this package root stays light.
"""

from ltr_sidecar.predictor.artifact import MANIFEST, PredictorLoadError, read_manifest
from ltr_sidecar.predictor.base import (
    Predictor,
    PromptLengthPredictor,
    RandomPredictor,
    bundled_predictor_path,
    load_predictor,
    set_scoring_threads,
)
from ltr_sidecar.predictor.metrics import kendall_tau_b

__all__ = [
    "MANIFEST",
    "Predictor",
    "PredictorLoadError",
    "PromptLengthPredictor",
    "RandomPredictor",
    "bundled_predictor_path",
    "kendall_tau_b",
    "load_predictor",
    "read_manifest",
    "set_scoring_threads",
]
