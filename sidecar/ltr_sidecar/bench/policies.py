"""The benchmark's policy line-up: a queue policy (RankQueue) + which scorer gives the scores.

Every learned or heuristic ranker is just a `Predictor` giving scores (`ltr.contract`); the
queue policy `ltr` orders by score. So "classification buckets" and "prompt-length SJF" differ from
"ltr" only in the predictor, and all of them run through the same queue code.

Preemptive policies (simulator only until the sidecar can preempt, issue 15 step 3) order waiting
and running requests by an estimate of remaining tokens (`bench.preemption` estimators) and may
displace running requests: `srtf` (true remaining, the limit), `ltr-preempt` (the paper's scheduler:
score once, preempt by it), `ltr-rerank` (re-estimated as tokens are generated).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Scorer names used by BenchPolicy.scorer.
LTR = "ltr"  # the learned ranking predictor (ListMLE)
CLASSIFIER = "classifier"  # length-bucket classification predictor
PROMPT_LENGTH = "prompt-length"  # shorter prompt first
GUARDED, PAPER_GUARD = "guarded", "paper"  # preemption guard rails: the run's config / none (vllm-ltr)


@dataclass(frozen=True)
class BenchPolicy:
    """One column of the comparison."""

    name: str
    queue_policy: str  # a RankQueue policy: fcfs | ltr | oracle
    scorer: str | None = None  # which predictor scores requests (None: none needed)
    starvation: bool = False  # apply the run's starvation threshold
    description: str = ""
    estimator: str | None = None  # preemptive: remaining-length estimator (bench.preemption.ESTIMATORS)
    guard: str = GUARDED  # preemptive: GUARDED (the run's PreemptionConfig) or PAPER_GUARD (none)

    @property
    def preemptive(self) -> bool:
        return self.estimator is not None


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
PREEMPTIVE_POLICIES: tuple[BenchPolicy, ...] = (
    BenchPolicy(
        "srtf",
        "remaining",
        estimator="true",
        guard=PAPER_GUARD,
        description="preemptive shortest remaining true length (the limit)",
    ),
    BenchPolicy(
        "ltr-preempt",
        "remaining",
        LTR,
        estimator="static",
        description="ltr score ranks waiting and running requests together; preemption, guard rails",
    ),
    BenchPolicy(
        "ltr-preempt-starve",
        "remaining",
        LTR,
        starvation=True,
        estimator="static",
        description="ltr-preempt + starvation prevention (overdue requests are never preempted)",
    ),
    BenchPolicy(
        "ltr-preempt-paper",
        "remaining",
        LTR,
        estimator="static",
        guard=PAPER_GUARD,
        description="ltr-preempt without guard rails (vllm-ltr: re-sort everything every step)",
    ),
    BenchPolicy(
        "ltr-rerank",
        "remaining",
        LTR,
        estimator="residual",
        description="ltr-preempt ranked by E[remaining | generated, score] (calibrated on training)",
    ),
    BenchPolicy(
        "ltr-rerank-starve",
        "remaining",
        LTR,
        starvation=True,
        estimator="residual",
        description="ltr-rerank + starvation prevention",
    ),
    BenchPolicy(
        "ltr-rerank-minus",
        "remaining",
        LTR,
        estimator="minus",
        description="ltr-preempt ranked by calibrated expected total - generated",
    ),
)
POLICY_NAMES: tuple[str, ...] = tuple(p.name for p in ALL_POLICIES)  # the default line-up
PREEMPTIVE_NAMES: tuple[str, ...] = tuple(p.name for p in PREEMPTIVE_POLICIES)


def select_policies(names: Sequence[str] | None) -> list[BenchPolicy]:
    """The policies called `names` (the default line-up when None); ValueError lists the valid names."""
    if not names:
        return list(ALL_POLICIES)
    by_name = {p.name: p for p in (*ALL_POLICIES, *PREEMPTIVE_POLICIES)}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(
            f"unknown policy {', '.join(unknown)}; expected some of "
            f"{', '.join((*POLICY_NAMES, *PREEMPTIVE_NAMES))}"
        )
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
