"""Output-length ranking predictors (Fu et al., NeurIPS 2024), grouped by who needs them:

- `runtime/`: the `Predictor` interface, models, artifacts, the version store and loading (the sidecar);
- `training/`: objectives, the training loop and pipeline (the `ltr predictor train` and retrain paths);
- `ops/`: evaluation, retraining from traces and the `ltr predictor` command.

Imports point runtime ← training ← ops. Heavy modules (torch, transformers) are imported only by the
submodules that need them; this package root stays light. Scores follow `ltr.contract`'s convention.
"""

from ltr_sidecar.predictor.runtime.artifact import MANIFEST, PredictorLoadError, read_manifest
from ltr_sidecar.predictor.runtime.base import (
    Predictor,
    PromptLengthPredictor,
    RandomPredictor,
    set_scoring_threads,
)
from ltr_sidecar.predictor.runtime.registry import bundled_predictor_path, load_predictor

__all__ = [
    "MANIFEST",
    "Predictor",
    "PredictorLoadError",
    "PromptLengthPredictor",
    "RandomPredictor",
    "bundled_predictor_path",
    "load_predictor",
    "read_manifest",
    "set_scoring_threads",
]
