"""The predictors a benchmark compares: loaded from artifact directories, or trained on the
benchmark's training split (fast backbone, seconds on CPU) and cached by data fingerprint."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

from ltr_sidecar.bench.policies import CLASSIFIER, LTR, PROMPT_LENGTH
from ltr_sidecar.data.datasets import Example
from ltr_sidecar.predictor.runtime.artifact import PredictorLoadError, data_fingerprint
from ltr_sidecar.predictor.runtime.base import Predictor, PromptLengthPredictor
from ltr_sidecar.predictor.runtime.registry import bundled_predictor_path, load_predictor

OBJECTIVE = {LTR: "listmle", CLASSIFIER: "classify"}


def split_holdout(
    examples: Sequence[Example], fraction: float, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """(train, held-out) split by distinct prompt, so no held-out prompt is ever trained on."""
    if not 0 < fraction < 1:
        raise ValueError("holdout fraction must be within (0, 1)")
    prompts = sorted({e.prompt for e in examples})
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: max(1, round(len(prompts) * fraction))])
    return [e for e in examples if e.prompt not in held], [e for e in examples if e.prompt in held]


def trained_predictor(
    kind: str,
    examples: Sequence[Example],
    cache_dir: Path | None,
    log: Callable[[str], None] = print,
    backbone: str = "fast",
) -> Predictor:
    """A predictor (`ltr`: ListMLE, `classifier`: length classes) trained on `examples`, reused from
    `cache_dir` when one was trained on the same data and backbone before."""
    from ltr_sidecar.predictor.training.pipeline import TrainSpec, train_predictor

    fingerprint = data_fingerprint((e.prompt, e.length) for e in examples).split(":")[1].replace("/n=", "-")
    tag = kind if backbone == "fast" else f"{kind}-{Path(backbone).name}"
    target = cache_dir / f"{tag}-{fingerprint}" if cache_dir else None
    if target is not None and (target / "predictor.json").exists():
        try:
            pred = load_predictor(target)
            log(f"{kind} predictor: cached {target}")
            return pred
        except PredictorLoadError as exc:
            log(f"{kind} predictor: cache unusable ({exc}); retraining")
    log(f"{kind} predictor: training ({backbone} backbone) on {len(examples)} examples ...")
    spec = TrainSpec(
        backbone=backbone,
        objective=OBJECTIVE[kind],
        version=f"bench-{tag}",
        device="cpu",
        train={"progress": False},
    )
    pred, result = train_predictor(examples, spec)
    log(f"{kind} predictor: validation Kendall tau {result.best_val_tau}, {result.seconds:.1f}s")
    if target is not None:
        pred.save(target)
    return pred


def resolve_predictors(
    needed: Sequence[str],
    train_examples: Sequence[Example] | None,
    *,
    ltr_dir: str | None = None,
    classifier_dir: str | None = None,
    cache_dir: Path | None = None,
    backbone: str = "fast",
    log: Callable[[str], None] = print,
) -> dict[str, Predictor]:
    """Predictors for each needed scorer name. Explicit artifact dirs win; else train on
    `train_examples` (the ranking predictor on `backbone`, the classifier baseline on the fast
    backbone); without those, `ltr` uses the bundled predictor (the classifier cannot)."""
    out: dict[str, Predictor] = {}
    for kind in dict.fromkeys(needed):
        if kind == PROMPT_LENGTH:
            out[kind] = PromptLengthPredictor()
            continue
        explicit = {LTR: ltr_dir, CLASSIFIER: classifier_dir}[kind]
        if explicit:
            out[kind] = load_predictor(explicit)
        elif train_examples:
            out[kind] = trained_predictor(
                kind, train_examples, cache_dir, log, backbone if kind == LTR else "fast"
            )
        elif kind == LTR:
            out[kind] = load_predictor(bundled_predictor_path())
        else:
            raise ValueError(
                f"the {kind} policy needs --{kind} DIR or training data (--train-data or --holdout)"
            )
    return out
