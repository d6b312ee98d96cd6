"""The benchmark's policy line-up: a queue policy (RankQueue) + which scorer gives the scores.

Every learned or heuristic ranker is just a `Predictor` giving scores (`ltr.contract`); the
queue policy `ltr` orders by score. So "classification buckets" and "prompt-length SJF" differ from
"ltr" only in the predictor, and all of them run through the same queue code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Scorer names used by BenchPolicy.scorer.
LTR = "ltr"  # the learned ranking predictor (ListMLE)
CLASSIFIER = "classifier"  # length-bucket classification predictor
PROMPT_LENGTH = "prompt-length"  # shorter prompt first


@dataclass(frozen=True)
class BenchPolicy:
    """One column of the comparison."""

    name: str
    queue_policy: str  # a RankQueue policy: fcfs | ltr | oracle
    scorer: str | None = None  # which predictor scores requests (None: none needed)
    starvation: bool = False  # apply the run's starvation threshold
    description: str = ""


ALL_POLICIES: tuple[BenchPolicy, ...] = (
    BenchPolicy("fcfs", "fcfs", description="first come, first served (engines' default)"),
    BenchPolicy("ltr", "ltr", LTR, description="learning-to-rank predictor, shortest predicted first"),
    BenchPolicy(
        "ltr-starve",
        "ltr",
        LTR,
        starvation=True,
        description="ltr + starvation prevention (long waiters promoted)",
    ),
    BenchPolicy("oracle", "oracle", description="true output length, shortest first (upper bound)"),
    BenchPolicy("classifier", "ltr", CLASSIFIER, description="length-bucket classifier (S3-like baseline)"),
    BenchPolicy("prompt-length", "ltr", PROMPT_LENGTH, description="shortest prompt first (SJF heuristic)"),
)
POLICY_NAMES: tuple[str, ...] = tuple(p.name for p in ALL_POLICIES)


def select_policies(names: Sequence[str] | None) -> list[BenchPolicy]:
    """The policies called `names` (all when None); ValueError lists the valid names."""
    if not names:
        return list(ALL_POLICIES)
    by_name = {p.name: p for p in ALL_POLICIES}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown policy {', '.join(unknown)}; expected some of {', '.join(POLICY_NAMES)}")
    return [by_name[n] for n in names]


Scorer = Callable[[Sequence[str]], list[float]]


def score_prompts(scorer: Scorer, prompts: Sequence[str], batch: int = 64) -> list[float]:
    """Scores of `prompts`, each distinct prompt scored once, in batches."""
    distinct = list(dict.fromkeys(prompts))
    cache: dict[str, float] = {}
    for i in range(0, len(distinct), batch):
        chunk = distinct[i : i + batch]
        scores = scorer(chunk)
        if len(scores) != len(chunk):
            raise ValueError(f"scorer returned {len(scores)} scores for {len(chunk)} prompts")
        cache.update(zip(chunk, (float(s) for s in scores), strict=True))
    return [cache[p] for p in prompts]
