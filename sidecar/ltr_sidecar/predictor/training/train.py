"""Training loop shared by every neural predictor: ListMLE over lists (or cross-entropy over length
classes for the S3-like baseline), Adam with weight decay, seeds, early stopping on validation τ,
an optional wall-clock budget, tqdm progress, CPU or CUDA."""

from __future__ import annotations

import copy
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from ltr_sidecar.predictor.runtime.neural import NeuralPredictor
from ltr_sidecar.predictor.training.losses import length_class, listmle_loss
from ltr_sidecar.stats import kendall_tau_b


@dataclass
class TrainConfig:
    """Hyper-parameters (paper defaults where it states them)."""

    list_size: int = 32
    epochs: int = 5
    lr: float = 2e-5
    weight_decay: float = 0.01
    seed: int = 0
    patience: int = 2
    warmup_frac: float = 0.1
    lists_per_step: int = 1
    grad_clip: float = 1.0
    progress: bool = True
    time_budget: float | None = None  # seconds of wall time for the whole fit (None: no limit)

    def __post_init__(self) -> None:
        if self.list_size < 2:
            raise ValueError("list_size must be >= 2")
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if not self.lr > 0:
            raise ValueError("lr must be > 0")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError("time_budget must be > 0 seconds")


@dataclass
class TrainResult:
    """What a training run did."""

    best_val_tau: float | None
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    budget_exhausted: bool = False  # training stopped because the time budget ran out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def set_seed(seed: int) -> torch.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def evaluate_tau(pred: NeuralPredictor, prompts: Sequence[str], lengths: Sequence[float]) -> float:
    """Kendall τ-b between scores and shortness (-length)."""
    scores = pred.score(prompts)
    return kendall_tau_b(scores, [-float(x) for x in lengths])


def fit(
    pred: NeuralPredictor,
    prompts: Sequence[str],
    targets: Sequence[float],
    cfg: TrainConfig,
    val: tuple[Sequence[str], Sequence[float]] | None = None,
    class_bounds: Sequence[float] | None = None,
    desc: str = "train",
    deadline: float | None = None,
) -> TrainResult:
    """Train in place. `targets`: ListMLE ordering keys (larger = shorter) or, for `classify`, raw
    lengths mapped to classes with `class_bounds`. `val`: (prompts, lengths) for early stopping.
    `deadline` (a `time.perf_counter()` value, else now + `cfg.time_budget`): training stops before it,
    keeping the best validated state so far."""
    t0 = time.perf_counter()  # the budget covers set-up too (a process's first optimizer is slow)
    if deadline is None and cfg.time_budget is not None:
        deadline = t0 + cfg.time_budget
    if len(prompts) != len(targets):
        raise ValueError("prompts and targets differ in length")
    if len(prompts) < 2:
        raise ValueError("need at least 2 training examples")
    gen = set_seed(cfg.seed)
    module = pred.module
    device = pred.device
    if pred.objective == "classify":
        if class_bounds is None:
            raise ValueError("classify objective needs class_bounds")
        labels = torch.tensor([length_class(x, class_bounds) for x in targets], dtype=torch.long)
    else:
        labels = torch.tensor([float(t) for t in targets], dtype=torch.float32)
    sparse = list(getattr(module, "sparse_parameters", list)())
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in module.parameters() if p.requires_grad and id(p) not in sparse_ids]
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.AdamW(dense, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ]
    if sparse:
        optimizers.append(torch.optim.SparseAdam(sparse, lr=cfg.lr))
    n = len(prompts)
    lists_per_epoch = math.ceil(n / cfg.list_size)
    steps_per_epoch = math.ceil(lists_per_epoch / cfg.lists_per_step)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(cfg.warmup_frac * total))

    def lr_factor(step: int) -> float:  # linear warm-up, then linear decay to 5%
        return min(1.0, (step + 1) / warm) * max(0.05, 1 - max(0, step - warm) / max(1, total - warm))

    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lr_factor) for o in optimizers]
    best_tau, best_state, best_epoch, bad = -math.inf, None, 0, 0
    history: list[dict[str, float]] = []
    clock = _Clock(deadline, t0, n_val=len(val[0]) if val is not None else 0, list_size=cfg.list_size)
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        module.train()
        order = torch.randperm(n, generator=gen).tolist()
        lists = [order[i : i + cfg.list_size] for i in range(0, n, cfg.list_size)]
        lists = [lst for lst in lists if len(lst) >= 2]
        bar = tqdm(
            range(0, len(lists), cfg.lists_per_step),
            desc=f"{desc} epoch {epoch}/{cfg.epochs}",
            disable=not (cfg.progress and sys.stderr.isatty()),
            file=sys.stderr,
            leave=False,
        )
        total_loss, steps = 0.0, 0
        for s in bar:
            if clock.must_stop():
                break
            t_step = time.perf_counter()
            group = lists[s : s + cfg.lists_per_step]
            flat = [i for lst in group for i in lst]
            out = module([prompts[i] for i in flat])
            loss = torch.zeros((), device=device)
            pos = 0
            for lst in group:
                seg = out[pos : pos + len(lst)]
                lab = labels[lst].to(device)
                if pred.objective == "classify":
                    loss = loss + torch.nn.functional.cross_entropy(seg.float(), lab)
                else:
                    loss = loss + listmle_loss(seg[:, 0].float(), lab, generator=gen)
                pos += len(lst)
            loss = loss / len(group)
            for o in optimizers:
                o.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(dense, cfg.grad_clip)
            for o, sch in zip(optimizers, schedulers, strict=True):
                o.step()
                sch.step()
            total_loss += float(loss.detach())
            steps += 1
            clock.step_took(time.perf_counter() - t_step)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if steps == 0:  # the budget ran out before this epoch did anything
            epoch -= 1
            break
        row = {"epoch": float(epoch), "loss": total_loss / steps}
        if val is not None and len(val[0]) >= 2:
            t_eval = time.perf_counter()
            tau = evaluate_tau(pred, val[0], val[1])
            clock.eval_took(time.perf_counter() - t_eval)
            row["val_tau"] = tau
            if tau > best_tau:
                best_tau, best_epoch, bad = tau, epoch, 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                bad += 1
        history.append(row)
        if cfg.progress:
            msg = f"{desc}: epoch {epoch} loss {row['loss']:.4f}"
            if "val_tau" in row:
                msg += f" val_tau {row['val_tau']:.4f} (best {best_tau:.4f} @ {best_epoch})"
            if clock.deadline is not None:
                msg += f" ({max(0.0, clock.deadline - time.perf_counter()):.0f} s of budget left)"
            print(msg, file=sys.stderr, flush=True)
        if (val is not None and bad >= cfg.patience) or clock.exhausted:
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return TrainResult(
        best_val_tau=None if best_state is None else best_tau,
        best_epoch=best_epoch if best_state is not None else epoch,
        epochs_run=epoch,
        seconds=time.perf_counter() - t0,
        history=history,
        budget_exhausted=clock.exhausted,
    )


class _Clock:
    """Deadline bookkeeping for `fit`: stop stepping early enough that the epoch's validation (timed
    the first time from the step times, afterwards measured) and the wrap-up (restoring the best state,
    calibrating, writing the manifest: 3% of the budget is kept for it) still end before the deadline."""

    def __init__(self, deadline: float | None, start: float, n_val: int, list_size: int) -> None:
        self.deadline = deadline
        self._margin = 0.03 * (deadline - start) if deadline is not None else 0.0
        self.exhausted = False
        self._val_lists = max(1, math.ceil(n_val / max(1, list_size))) if n_val else 0
        self._step = 0.0
        self._eval: float | None = None

    def step_took(self, seconds: float) -> None:
        self._step = seconds if self._step == 0.0 else 0.8 * self._step + 0.2 * seconds  # moving average

    def eval_took(self, seconds: float) -> None:
        self._eval = seconds

    def must_stop(self) -> bool:
        if self.deadline is None:
            return False
        # forward-only validation costs about a third of a training step per list
        reserve = self._eval if self._eval is not None else self._val_lists * self._step / 3
        if time.perf_counter() + self._step + reserve + self._margin >= self.deadline:
            self.exhausted = True
        return self.exhausted
