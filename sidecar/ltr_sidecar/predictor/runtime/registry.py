"""Loading a predictor artifact: a registry of loaders keyed by the manifest's `backbone`.

Loaders are named as "module:function" and imported only when an artifact of that backbone is loaded,
so the registry imports no model code (torch stays unimported for a prompt-length artifact) and a
backbone whose loader loads members (the ensemble) can call `load_predictor` without an import cycle.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ltr_sidecar.predictor.runtime.artifact import PredictorLoadError, read_manifest
from ltr_sidecar.predictor.runtime.base import Predictor, PromptLengthPredictor
from ltr_sidecar.predictor.runtime.calibration import Calibration

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"

Loader = Callable[[Path, dict[str, Any]], Predictor]

#: backbone → "module:callable(path, manifest) -> Predictor"
BACKBONES: dict[str, str] = {
    "prompt-length": f"{__name__}:load_prompt_length",
    "fast": "ltr_sidecar.predictor.runtime.neural:load_neural",
    "hf": "ltr_sidecar.predictor.runtime.neural:load_neural",
    "ensemble": "ltr_sidecar.predictor.runtime.ensemble:load_ensemble",
}


def register_backbone(backbone: str, loader: str) -> None:
    """Make artifacts whose manifest says `backbone` load with `loader` ("module:function")."""
    if ":" not in loader:
        raise ValueError(f"loader must be 'module:function', got {loader!r}")
    BACKBONES[backbone] = loader


def load_prompt_length(path: Path, manifest: dict[str, Any]) -> Predictor:
    return PromptLengthPredictor(version=str(manifest["version"]))


def _loader(backbone: str, path: Path) -> Loader:
    target = BACKBONES.get(backbone)
    if target is None:
        raise PredictorLoadError(
            f"{path}: unknown predictor backbone {backbone!r} (known: {', '.join(sorted(BACKBONES))})"
        )
    module, _, name = target.partition(":")
    loader: Loader = getattr(importlib.import_module(module), name)
    return loader


def load_predictor(path: str | Path) -> Predictor:
    """Load a predictor artifact directory, dispatching on its manifest's backbone.

    Raises PredictorLoadError with a clear message for a missing, corrupt or mismatched artifact
    (a malformed `calibration` entry included)."""
    p = Path(path)
    manifest = read_manifest(p)
    if manifest.get("calibration") is not None:
        Calibration.from_dict(manifest["calibration"], where=f"{p}: calibration")
    return _loader(str(manifest["backbone"]), p)(p, manifest)


def bundled_predictor_path() -> Path:
    """The small fast-ranker artifact shipped with the package (cold-start default)."""
    return BUNDLED_DIR
