"""High-level training: examples -> a trained `NeuralPredictor` with a complete manifest
(label scheme, data fingerprint, validation τ, timings). Used by the CLI, the retrain job and the
benchmark."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ltr_sidecar.data.datasets import Example
from ltr_sidecar.predictor.runtime.artifact import data_fingerprint
from ltr_sidecar.predictor.runtime.fast import DEFAULTS as FAST_DEFAULTS
from ltr_sidecar.predictor.runtime.fast import FastRanker
from ltr_sidecar.predictor.runtime.hf import HFRanker, resolve_backbone
from ltr_sidecar.predictor.runtime.neural import NeuralPredictor, pick_device
from ltr_sidecar.predictor.training.losses import bucket_targets, quantile_boundaries
from ltr_sidecar.predictor.training.train import TrainConfig, TrainResult, fit

DEFAULT_BACKBONE = "minilm"  # best measured (docs/predictor.md); "fast" when the MiniLM package is absent
# per-backbone defaults, chosen by measurement (see docs/predictor.md)
BACKBONE_DEFAULTS: dict[str, dict[str, Any]] = {
    "fast": {"lr": 3e-3, "epochs": 20, "patience": 4, "weight_decay": 0.0},
    "hf": {"lr": 3e-5, "epochs": 6, "patience": 2, "weight_decay": 0.01},
}


@dataclass
class TrainSpec:
    """What to train. `backbone`: 'fast', 'minilm' or a local HF model directory."""

    backbone: str = DEFAULT_BACKBONE
    objective: str = "listmle"
    bucket: float = 10.0
    num_classes: int = 10
    val_fraction: float = 0.1
    pooling: str = "mean"
    max_input: int | None = None
    quantize: str = "none"  # HF backbones: "int8" = dynamic int8 at inference on CPU
    device: str = "auto"
    version: str = "dev"
    fast_options: dict[str, int] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides


def default_backbone() -> str:
    """'minilm' when its PyPI package is installed, else 'fast' (the CPU ranker)."""
    import importlib.util

    return DEFAULT_BACKBONE if importlib.util.find_spec("all_minilm_l6_v2") is not None else "fast"


def build_predictor(spec: TrainSpec, out_dim: int) -> NeuralPredictor:
    """A freshly initialised predictor for the spec's backbone."""
    if spec.backbone == "fast":
        opts = {**FAST_DEFAULTS, **spec.fast_options}
        if spec.max_input:
            opts["max_chars"] = spec.max_input
        module: FastRanker | HFRanker = FastRanker(out_dim=out_dim, **opts)
    else:
        path, name = resolve_backbone(spec.backbone)
        module = HFRanker(
            path,
            out_dim=out_dim,
            pooling=spec.pooling,
            max_tokens=spec.max_input or 256,
            name=name,
            quantize=spec.quantize,
        )
    pred = NeuralPredictor(module, objective=spec.objective, version=spec.version)
    return pred.to(pick_device(spec.device))


def train_config(spec: TrainSpec, kind: str) -> TrainConfig:
    return TrainConfig(**{**BACKBONE_DEFAULTS[kind], **spec.train})


def split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Random (train, validation) index split; validation empty when fraction <= 0 or it would be < 8."""
    idx = list(range(n))
    n_val = int(n * fraction)
    if fraction <= 0 or n_val < 8:
        return idx, []
    random.Random(seed).shuffle(idx)
    return idx[n_val:], idx[:n_val]


def train_predictor(
    examples: Sequence[Example],
    spec: TrainSpec,
    base: NeuralPredictor | None = None,
    val_examples: Sequence[Example] | None = None,
    pretrain_targets: tuple[Sequence[str], Sequence[float]] | None = None,
    targets: Sequence[float] | None = None,
    desc: str = "train",
    length_unit: str = "words",
) -> tuple[NeuralPredictor, TrainResult]:
    """Train (or fine-tune `base`) on examples. Validation: `val_examples` if given, else a random
    `spec.val_fraction` split. `pretrain_targets`: optional (prompts, keys) ListMLE stage run first
    (e.g. consensus length over many models). `targets`: ListMLE keys aligned with `examples`
    (larger = shorter) replacing the bucket labels."""
    if len(examples) < 2:
        raise ValueError(f"need at least 2 training examples, got {len(examples)}")
    if targets is not None and len(targets) != len(examples):
        raise ValueError("targets must align with examples")
    seed = int(spec.train.get("seed", 0))
    if val_examples is None:
        tr_idx, va_idx = split_indices(len(examples), spec.val_fraction, seed)
        val_ex = [examples[i] for i in va_idx]
    else:
        tr_idx, val_ex = list(range(len(examples))), list(val_examples)
    train_ex = [examples[i] for i in tr_idx]
    lengths = [e.length for e in train_ex]
    bounds = quantile_boundaries(lengths, spec.num_classes) if spec.objective == "classify" else None
    out_dim = spec.num_classes if spec.objective == "classify" else 1
    pred = base if base is not None else build_predictor(spec, out_dim)
    if base is not None and base.objective != spec.objective:
        raise ValueError(f"base predictor objective {base.objective!r} differs from {spec.objective!r}")
    kind = pred.module.kind
    cfg = train_config(spec, kind)
    val = ([e.prompt for e in val_ex], [e.length for e in val_ex]) if val_ex else None
    t0 = time.perf_counter()
    deadline = t0 + cfg.time_budget if cfg.time_budget is not None else None
    if pretrain_targets is not None and spec.objective == "listmle":
        # with a budget, pre-training gets at most half of it (what it leaves over goes to fine-tuning)
        half = t0 + cfg.time_budget / 2 if cfg.time_budget is not None else None
        fit(
            pred,
            pretrain_targets[0],
            pretrain_targets[1],
            cfg,
            val=val,
            desc=f"{desc} pretrain",
            deadline=half,
        )
    prompts = [e.prompt for e in train_ex]
    if spec.objective == "classify":
        keys: list[float] = lengths
    elif targets is not None:
        keys = [float(targets[i]) for i in tr_idx]
    else:
        keys = bucket_targets(lengths, spec.bucket)
    result = fit(pred, prompts, keys, cfg, val=val, class_bounds=bounds, desc=desc, deadline=deadline)
    seconds = time.perf_counter() - t0
    label_scheme: dict[str, Any] = (
        {"type": "classes", "num_classes": spec.num_classes, "boundaries": bounds}
        if bounds is not None
        else {"type": "custom-keys", "order": "larger key = shorter"}
        if targets is not None
        else {"type": "buckets", "bucket": spec.bucket, "order": "larger label = shorter"}
    )
    if pretrain_targets is not None:
        label_scheme["pretrain"] = "consensus length keys over other models"
    pred.version = spec.version
    pred.meta.update(
        {
            "label_scheme": label_scheme,
            "data_fingerprint": data_fingerprint((e.prompt, e.length) for e in train_ex),
            "train_samples": len(train_ex),
            "val_samples": len(val_ex),
            "val_kendall_tau": result.best_val_tau,
            "train_seconds": round(seconds, 2),
            "train_config": {**cfg.__dict__, "device": str(pred.device)},
            "backbone_name": getattr(pred.module, "name", "fast-ngram"),
            "parent": base.version if base is not None else None,
        }
    )
    # score -> expected length (`length_unit`: "words" unless the lengths are engine output tokens),
    # fitted on the validation examples (the training ones when there are too few)
    from ltr_sidecar.predictor.runtime.calibration import fit_calibration

    cal_ex = val_ex if len(val_ex) >= 2 else train_ex
    pred.meta.pop("calibration", None)  # a fine-tuned base's calibration no longer holds
    if len(cal_ex) >= 2:
        cal = fit_calibration(pred.score([e.prompt for e in cal_ex]), [e.length for e in cal_ex], length_unit)
        pred.meta["calibration"] = cal.to_dict()
    return pred, result
