"""Typed options of the `ltr predictor` commands: what the CLI parses and the train/retrain code takes.

`TrainOptions.to_spec()` turns the command-line training flags into a `TrainSpec` (imported lazily, so
parsing stays torch-free). The retrain job takes one `RetrainOptions`, never an argparse namespace.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ltr_sidecar.predictor.training.pipeline import TrainSpec


@dataclass(frozen=True)
class TrainOptions:
    """Training flags shared by `train` and `retrain` (None = the backbone's measured default)."""

    backbone: str | None = None
    objective: str = "listmle"
    list_size: int | None = None
    epochs: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    patience: int | None = None
    seed: int = 0
    bucket: float = 10.0
    num_classes: int = 10
    val_fraction: float = 0.1
    pooling: str = "mean"
    max_input: int | None = None
    device: str = "auto"
    fast_buckets: int | None = None
    fast_dim: int | None = None
    time_budget: float | None = None  # seconds (the CLI takes a duration such as 5m)
    quiet: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainOptions:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    def to_spec(self, version: str) -> TrainSpec:
        """The `TrainSpec` these options describe, recording `version`."""
        from ltr_sidecar.predictor.training.pipeline import TrainSpec, default_backbone

        train: dict[str, Any] = {
            k: v
            for k, v in (
                ("list_size", self.list_size),
                ("epochs", self.epochs),
                ("lr", self.lr),
                ("weight_decay", self.weight_decay),
                ("patience", self.patience),
                ("time_budget", self.time_budget),
            )
            if v is not None
        }
        train.update(seed=self.seed, progress=not self.quiet)
        fast = {k: v for k, v in (("buckets", self.fast_buckets), ("dim", self.fast_dim)) if v is not None}
        return TrainSpec(
            backbone=default_backbone() if self.backbone in (None, "auto") else self.backbone,
            objective=self.objective,
            bucket=self.bucket,
            fast_options=fast,
            num_classes=self.num_classes,
            val_fraction=self.val_fraction,
            pooling=self.pooling,
            max_input=self.max_input,
            device=self.device,
            version=version,
            train=train,
        )


@dataclass(frozen=True)
class RetrainOptions:
    """Everything `run_retrain` needs (see `ltr predictor retrain --help` for each field)."""

    traces: str
    store: str
    window: str = "24h"
    min_samples: int = 200
    base: str | None = None
    min_kendall_tau: float = 0.0
    holdout_fraction: float = 0.2
    version: str | None = None
    keep: int = 0
    protect: tuple[str, ...] = ()
    model_name: str | None = None
    result_file: str | None = None
    report_configmap: str | None = None
    now: float | None = None
    encoder: str | None = None  # --backbone auto's encoder: None = MiniLM when installed; "none" = never
    train: TrainOptions = field(default_factory=TrainOptions)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RetrainOptions:
        own = {f.name: getattr(args, f.name) for f in fields(cls) if f.name not in ("train", "protect")}
        return cls(**own, protect=tuple(args.protect), train=TrainOptions.from_args(args))
