"""A `LengthCalibration` for the ranking predictor, fitted on the training split only.

Scores of a predictor on its own training prompts are over-confident, so the (score, length)
pairs come from K-fold cross-fitting: a predictor of the same backbone is trained on K-1 folds and
scores the held-out fold; each fold's scores become within-fold quantiles (ListMLE scores have no
common scale across models). The serving predictor's scores on the training prompts then place a
new score on that quantile axis. No replayed (test) request is looked at.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ltr_sidecar.bench.calibration import LengthCalibration, fit_length_calibration, fold_quantiles
from ltr_sidecar.bench.policies import LTR, score_prompts
from ltr_sidecar.bench.predictors import trained_predictor
from ltr_sidecar.data.datasets import Example
from ltr_sidecar.predictor.runtime.base import Predictor
from ltr_sidecar.stats import kendall_tau_b


def crossfit_calibration(
    train: Sequence[Example],
    predictor: Predictor,
    *,
    folds: int = 5,
    cache_dir: Path | None = None,
    backbone: str = "fast",
    seed: int = 0,
    min_support: int = 20,
    log: Callable[[str], None] = print,
) -> tuple[LengthCalibration, dict[str, Any]]:
    """(calibration, facts about it) from `folds`-fold cross-fitted scores of `train`."""
    if folds < 2:
        raise ValueError("cross-fitting needs at least 2 folds")
    prompts = sorted({e.prompt for e in train})
    if len(prompts) < 2 * folds:
        raise ValueError(
            f"calibration needs at least {2 * folds} distinct training prompts, got {len(prompts)}"
        )
    random.Random(seed).shuffle(prompts)
    fold_of = {p: i % folds for i, p in enumerate(prompts)}
    quantiles: list[float] = []
    lengths: list[float] = []
    taus: list[float] = []
    for f in range(folds):
        held = [e for e in train if fold_of[e.prompt] == f]
        model = trained_predictor(LTR, [e for e in train if fold_of[e.prompt] != f], cache_dir, log, backbone)
        scores = score_prompts(model.score, [e.prompt for e in held])
        quantiles += fold_quantiles(scores)
        lengths += [e.length for e in held]
        taus.append(kendall_tau_b([-s for s in scores], [e.length for e in held]))
    reference = score_prompts(predictor.score, [e.prompt for e in train])
    calibration = fit_length_calibration(quantiles, lengths, reference, min_support)
    info = {
        "folds": folds,
        "pairs": len(lengths),
        "backbone": backbone,
        "fold_kendall_tau": [round(t, 4) for t in taus],
        "isotonic_knots": len(calibration.total.xs),
    }
    log(
        f"calibration: {folds}-fold cross-fitted on {len(lengths)} training examples, "
        f"fold tau {sum(taus) / folds:.3f}, {len(calibration.total.xs)} isotonic knots"
    )
    return calibration, info


def remaining_quality(
    calibration: LengthCalibration,
    scores: Sequence[float],
    lengths: Sequence[int],
    generated: Sequence[int] = (0, 50, 100, 200, 400),
    every: int = 16,
    draws: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """How well each learned estimator predicts remaining tokens (evaluation on labelled requests).

    Per `generated` g, over requests still running (L > g): Kendall τ of estimate vs L - g, mean
    estimate ÷ mean truth, mean absolute error. `mixed_tau`: each request at a random progress
    g ~ U[0, L) — the comparison a preemptive scheduler makes — averaged over `draws`.
    """
    from ltr_sidecar.bench.preemption import make_estimator

    kinds = ("static", "minus", "residual")
    est = {k: make_estimator(k, lengths, scores, calibration, every) for k in kinds}
    rows = []
    for g in generated:
        alive = [i for i, n in enumerate(lengths) if n > g]
        if len(alive) < 2:
            continue
        truth = [lengths[i] - g for i in alive]
        row: dict[str, float] = {"generated": g, "requests": len(alive)}
        for k in kinds:
            e = [est[k].remaining(i, g) for i in alive]
            row[f"{k}_tau"] = round(kendall_tau_b(e, truth), 4)
            row[f"{k}_bias"] = round(sum(e) / sum(truth), 3)
            row[f"{k}_mae"] = round(sum(abs(a - b) for a, b in zip(e, truth, strict=True)) / len(e), 1)
        rows.append(row)
    rng = random.Random(seed)
    mixed = {k: 0.0 for k in kinds}
    for _ in range(draws):
        progress = [rng.randrange(n) for n in lengths]
        truth = [n - g for n, g in zip(lengths, progress, strict=True)]
        for k in kinds:
            mixed[k] += kendall_tau_b([est[k].remaining(i, g) for i, g in enumerate(progress)], truth) / draws
    return {"by_generated": rows, "mixed_tau": {k: round(v, 4) for k, v in mixed.items()}}
