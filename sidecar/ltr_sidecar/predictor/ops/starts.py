"""Which starts a retrain tries and how they share its time budget ("backbone by budget").

With `--backbone auto` (the default, and the CronJob's command line) and a trained current version,
a retrain tries, cheapest first, and keeps the start with the best validation τ:

1. `fine-tuned`: the current version fine-tuned on the traces (warm start);
2. `fresh`: a fresh fast ranker (of the current one's shape when it is one): a ranker trained on
   another workload can be a worse start than none (benchmarks/results/learning-curve-*);
3. `encoder`: when the current version is a fast ranker, a fresh encoder (`--encoder`, default MiniLM
   when its package is installed) trained for CPU serving (ENCODER_MAX_INPUT tokens, int8 on CPU:
   about 6 ms a request batched, benchmarks/results/int8-schemes.md). Only with a time budget, at least
   MIN_ENCODER_SAMPLES training samples (its measured gains over the fast ranker are at N >= 500),
   and when two timed training steps say MIN_ENCODER_EPOCHS epochs fit in the budget left.

Fast starts get at most FAST_SHARE of the budget each when an encoder follows (they take seconds),
else an equal share of what is left; the encoder gets the rest, with as many epochs as fit.
An explicit `--backbone X` is one start: the current version fine-tuned when it is an X, else a fresh X.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from ltr_sidecar.data.datasets import Example
from ltr_sidecar.predictor.runtime.neural import NeuralPredictor
from ltr_sidecar.predictor.training.pipeline import (
    TrainSpec,
    build_predictor,
    train_config,
    train_predictor,
)
from ltr_sidecar.predictor.training.train import TrainResult

ENCODER_MAX_INPUT = 128  # tokens: int8 per channel at 128, 7.9 ms single p50 / 5.9 ms batched, one core
MIN_ENCODER_SAMPLES = 500
MIN_ENCODER_EPOCHS = 2
FAST_SHARE = 0.25
ENCODER_KEEPS = ("seed", "progress", "list_size")  # the other hyper-parameters are family-specific


@dataclass(frozen=True)
class Start:
    """One way to train the candidate: `spec` from `base` (None: fresh)."""

    name: str  # fine-tuned | fresh | encoder
    spec: TrainSpec
    base: NeuralPredictor | None = None

    @property
    def kind(self) -> str:
        if self.base is not None:
            return self.base.module.kind
        return "fast" if self.spec.backbone == "fast" else "hf"


class Tried(TypedDict):
    """What one start did (in the retrain result's `start.tried`)."""

    start: str
    backbone: str
    val_tau: float | None
    seconds: float
    time_budget_exhausted: bool


class Skipped(TypedDict):
    """A start left out, and why (in `start.skipped`)."""

    start: str
    reason: str


@dataclass
class Outcome:
    """The winning start and what every start did (`summary()` goes into the retrain result)."""

    candidate: NeuralPredictor
    fit: TrainResult
    chosen: str
    tried: list[Tried] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {"chosen": self.chosen, "tried": self.tried, "skipped": self.skipped}
        for t in self.tried:  # flat keys, e.g. fresh_val_tau
            out[f"{t['start'].replace('-', '_')}_val_tau"] = t["val_tau"]
        return out


def default_encoder() -> str | None:
    """'minilm' when its PyPI package is installed, else None."""
    return "minilm" if importlib.util.find_spec("all_minilm_l6_v2") is not None else None


def resolve_encoder(value: str | None) -> str | None:
    """`--encoder`: None (unset) = the default encoder; 'none' = none; 'minilm' only when installed."""
    if value is None or value == "minilm":
        return default_encoder()
    return None if value == "none" else value


def backbone_name(backbone: str) -> str:
    """The name an encoder predictor records for a `--backbone` value ('minilm' or a directory)."""
    from ltr_sidecar.predictor.runtime.hf import resolve_backbone

    return resolve_backbone(backbone)[1]


def fresh_fast_spec(spec: TrainSpec, base: NeuralPredictor | None) -> TrainSpec:
    """A fresh fast ranker: of the base's shape when the base is a fast ranker, else the defaults."""
    options: dict[str, int] = {}
    if base is not None and base.module.kind == "fast":
        shape = base.module.config()
        options = {k: int(shape[k]) for k in ("buckets", "dim", "hidden", "max_chars")}
    return dataclasses.replace(
        spec, backbone="fast", fast_options=options, max_input=None, train=dict(spec.train)
    )


def encoder_spec(spec: TrainSpec, backbone: str) -> TrainSpec:
    """A fresh encoder for CPU serving: short inputs, int8 on CPU, its own measured hyper-parameters."""
    train = {k: v for k, v in spec.train.items() if k in ENCODER_KEEPS}
    return dataclasses.replace(
        spec, backbone=backbone, max_input=ENCODER_MAX_INPUT, quantize="int8", train=train
    )


def plan_starts(
    spec: TrainSpec,
    base: NeuralPredictor | None,
    backbone: str,
    *,
    n_train: int,
    budget: float | None,
    encoder: str | None,
) -> tuple[list[Start], list[Skipped]]:
    """The starts to try, cheapest first, and the ones left out with the reason (see the module doc)."""
    if base is None:
        return [Start("fresh", spec)], []
    if backbone != "auto":
        same = (
            base.module.kind == "fast"
            if backbone == "fast"
            else getattr(base.module, "name", None) == backbone_name(backbone)
        )
        return ([Start("fine-tuned", spec, base)] if same else [Start("fresh", spec)]), []
    starts = [Start("fine-tuned", spec, base), Start("fresh", fresh_fast_spec(spec, base))]
    skipped: list[Skipped] = []
    if base.module.kind == "fast":
        if encoder is None:
            skipped.append(_skip("no encoder installed (--encoder none or its package missing)"))
        elif budget is None:
            skipped.append(_skip("no time budget (the encoder competes only under --time-budget)"))
        elif n_train < MIN_ENCODER_SAMPLES:
            skipped.append(_skip(f"{n_train} training samples, fewer than {MIN_ENCODER_SAMPLES}"))
        else:
            starts.append(Start("encoder", encoder_spec(spec, encoder)))
    return sorted(starts, key=lambda s: s.kind != "fast"), skipped  # stable: fast starts first


def _skip(reason: str) -> Skipped:
    return {"start": "encoder", "reason": reason}


def probe_epoch_seconds(spec: TrainSpec, prompts: Sequence[str], n_train: int, n_val: int) -> float:
    """Seconds one epoch of a fresh `spec` predictor takes on this machine, from the second of two timed
    training steps (forward and backward over one list) on a throwaway copy; validation counted at a third
    of a training step per list."""
    pred = build_predictor(spec, out_dim=1 if spec.objective == "listmle" else spec.num_classes)
    size = train_config(spec, pred.module.kind).list_size
    batch = list(prompts[:size])
    pred.module.train()
    step = 0.0
    for _ in range(2):
        t = time.perf_counter()
        pred.forward_scores(batch).sum().backward()
        step = time.perf_counter() - t
    return step * (math.ceil(n_train / size) + math.ceil(n_val / size) / 3)


def _encoder_epochs(spec: TrainSpec, examples: Sequence[Example], left: float) -> tuple[int, float]:
    """(epochs of a fresh encoder that fit in `left` seconds, seconds an epoch) from the probe."""
    n_val = round(len(examples) * spec.val_fraction)
    epoch = probe_epoch_seconds(spec, [e.prompt for e in examples], len(examples) - n_val, n_val)
    return (int(left // epoch) if epoch > 0 else MIN_ENCODER_EPOCHS), epoch


def _better(tau: float | None, best: float | None) -> bool:
    return tau is not None and (best is None or tau > best)


def run_starts(
    starts: Sequence[Start],
    examples: Sequence[Example],
    budget: float | None,
    log: Callable[[str], None],
    skipped: Sequence[Skipped] = (),
) -> Outcome:
    """Train every start within `budget` seconds in all (None: no limit); the best validation τ wins
    (the first start when none validated)."""
    t0 = time.perf_counter()
    out_skipped = list(skipped)
    best: tuple[NeuralPredictor, TrainResult, str] | None = None
    tried: list[Tried] = []
    for i, start in enumerate(starts):
        spec = dataclasses.replace(start.spec, train=dict(start.spec.train))
        if budget is not None:
            left = budget - (time.perf_counter() - t0)
            later_encoder = any(s.kind != "fast" for s in starts[i + 1 :])
            share = (
                budget * FAST_SHARE if later_encoder and start.kind == "fast" else left / (len(starts) - i)
            )
            spec.train["time_budget"] = max(1.0, min(left, share))
            if start.name == "encoder":
                fits, epoch = _encoder_epochs(spec, examples, left)
                if fits < MIN_ENCODER_EPOCHS:
                    reason = (
                        f"an epoch takes ~{epoch:.0f}s: {fits} of {MIN_ENCODER_EPOCHS} fit in {left:.0f}s"
                    )
                    out_skipped.append(_skip(reason))
                    log(f"encoder left out: {reason}")
                    continue
                spec.train["epochs"] = min(train_config(spec, "hf").epochs, fits)  # the schedule fits
                spec.train["time_budget"] = max(1.0, budget - (time.perf_counter() - t0))  # after the probe
                log(
                    f"encoder {spec.backbone}: ~{epoch:.0f}s an epoch, "
                    f"{spec.train['epochs']} epochs in {left:.0f}s"
                )
        pred, result = train_predictor(
            examples, spec, base=start.base, desc=f"retrain {start.name}", length_unit="tokens"
        )
        tried.append(
            {
                "start": start.name,
                "backbone": str(pred.meta.get("backbone_name", pred.backbone)),
                "val_tau": result.best_val_tau,
                "seconds": round(result.seconds, 2),
                "time_budget_exhausted": result.budget_exhausted,
            }
        )
        if best is None or _better(result.best_val_tau, best[1].best_val_tau):
            best = (pred, result, start.name)
    assert best is not None, "no start was trained"
    if len(tried) > 1:
        log("validation tau: " + ", ".join(f"{t['start']} {t['val_tau']}" for t in tried) + f": {best[2]}")
    return Outcome(best[0], best[1], best[2], tried, out_skipped)
