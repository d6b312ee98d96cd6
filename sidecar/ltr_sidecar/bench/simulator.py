"""Discrete-event simulator of a continuous-batching engine fed by the sidecar's RankQueue.

Virtual time advances one engine step at a time (step durations from `EngineProfile`). Before each
step, arrived requests are pushed into the SAME `RankQueue` the sidecar uses (so policies and
starvation prevention are the production code) and popped into the running batch while it has room:
at most `max_num_seqs` sequences, `max_batched_tokens` tokens per step (decodes + whole-prompt
prefills, like vLLM's chunked-prefill scheduler without splitting prompts) and KV-cache space.
A popped request that does not fit yet stays at the head until it does (vLLM blocks the head of
its waiting queue the same way). Every running sequence emits one token per step; a prefilled
sequence emits its first token in its prefill step. When the KV cache cannot hold one more token
for every running sequence, the most recently admitted one is preempted (vLLM's recompute
preemption): its KV is freed and it goes back to the queue with its original arrival and score,
to re-prefill prompt + generated tokens when readmitted.

Preemptive scheduling (`preemption`, with an `estimator`; the queue then orders by estimated
remaining tokens): when a waiting request finds no seat or KV room, it displaces the worst running
requests it beats (`preemption.choose_victims`), and KV pressure evicts the worst running request
instead of the newest. With `prefix_caching`, a preempted request's full KV blocks stay cached
(`PrefixCache`, LRU) and only the uncached tail is recomputed on resumption; without it, prompt +
generated tokens are prefilled again. Either way the recomputed tokens are charged to step time.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from ltr_sidecar.bench.engine_model import EngineProfile
from ltr_sidecar.bench.metrics import RequestResult
from ltr_sidecar.bench.preemption import Estimator, Key, PreemptionConfig, Running, choose_victims
from ltr_sidecar.bench.prefix_cache import PrefixCache
from ltr_sidecar.bench.workload import WorkItem
from ltr_sidecar.scheduling import Policy, QueueItem, RankQueue

REMAINING = "remaining"  # queue policy of estimator-ordered runs: (estimate, -score) in the item's payload


def _remaining_key(item: QueueItem) -> tuple[float, ...]:
    return (*item.payload, item.arrival, item.seq)


REMAINING_POLICY = Policy(REMAINING, _remaining_key, True, "lowest estimated remaining tokens first")


@dataclass
class _State:
    """Progress of one request across admissions."""

    item: WorkItem
    index: int
    score: float
    generated: int = 0  # tokens emitted before the current admission
    admit_step: int = -1  # step whose end emits this admission's first token
    first_token_s: float | None = None
    last_token_s: float | None = None
    max_gap_s: float = 0.0
    version: int = 0  # bumps on preemption, invalidating its finish-heap entry
    preemptions: int = 0
    protected: bool = False  # admitted as a starvation-promoted request: never a priority victim


@dataclass(frozen=True)
class SimResult:
    """Per-request results plus engine counters of one simulation."""

    results: list[RequestResult]
    steps: int
    preemptions: int  # all preemptions (KV pressure + priority)
    promotions: int  # requests promoted by the starvation guard
    end_s: float
    priority_preemptions: int = 0
    recomputed_tokens: int = 0  # prefill tokens spent again on resumed requests
    reused_tokens: int = 0  # resumed requests' tokens served from the prefix cache


def simulate(
    items: Sequence[WorkItem],
    profile: EngineProfile,
    policy: str = "fcfs",
    scores: Sequence[float] | None = None,
    starvation_threshold_s: float = 0.0,
    *,
    estimator: Estimator | None = None,
    preemption: PreemptionConfig | None = None,
    prefix_caching: bool = False,
    block_size: int = 16,
) -> SimResult:
    """Run `items` through the engine model with the queue `policy`; returns per-request timings.

    `scores[i]` is the predictor score of `items[i]` (`ltr.contract` convention); the `oracle` policy uses
    the true output length instead; the `remaining` policy orders by `estimator` (needed then), and
    `preemption` (which needs it) makes running requests preemptible.
    """
    if scores is not None and len(scores) != len(items):
        raise ValueError(f"{len(scores)} scores for {len(items)} requests")
    if (policy == REMAINING) != (estimator is not None) or (preemption is not None and estimator is None):
        raise ValueError(f"an estimator goes with the {REMAINING!r} policy, and preemption needs one")
    if not items:
        return SimResult([], 0, 0, 0, 0.0)
    for w in items:
        if w.prompt_tokens + w.output_tokens > profile.kv_capacity_tokens:
            raise ValueError(
                f"request {w.request_id} needs {w.prompt_tokens + w.output_tokens} KV tokens, "
                f"more than the engine's {profile.kv_capacity_tokens}"
            )
    queue = RankQueue(REMAINING_POLICY if estimator else policy, starvation_threshold=starvation_threshold_s)
    engine = _Engine(
        items,
        profile,
        queue,
        scores,
        estimator,
        preemption,
        PrefixCache(block_size) if prefix_caching else None,
    )
    return engine.run()


class _Engine:
    """One simulation's mutable state; `run` is the step loop."""

    def __init__(
        self,
        items: Sequence[WorkItem],
        profile: EngineProfile,
        queue: RankQueue,
        scores: Sequence[float] | None,
        estimator: Estimator | None,
        preemption: PreemptionConfig | None,
        cache: PrefixCache | None,
    ) -> None:
        self.items, self.profile, self.queue = items, profile, queue
        self.estimator, self.preemption, self.cache = estimator, preemption, cache
        self.order = sorted(range(len(items)), key=lambda i: (items[i].arrival_s, i))
        self.states = {
            items[i].request_id: _State(items[i], i, float(scores[i]) if scores is not None else 0.0)
            for i in self.order
        }
        self.running: dict[str, _State] = {}  # insertion order = admission order
        self.finish_heap: list[tuple[int, int, str]] = []  # (finishing step, version, request id)
        self.step_ends: list[float] = []
        self.kv_used = 0
        self.now, self.step = 0.0, 0
        self.held: QueueItem | None = None
        self.preemptions = self.priority_preemptions = self.recomputed = self.reused = 0
        self.promoted_ids: set[str] = set()
        self.results: list[RequestResult] = []

    def context(self, st: _State) -> int:
        return st.item.prompt_tokens + st.generated + (self.step - st.admit_step)

    def key(self, st: _State, generated: int) -> Key:
        assert self.estimator is not None
        return (self.estimator.remaining(st.index, generated), -st.score)

    def push(self, st: _State) -> None:
        self.queue.push(
            QueueItem(
                st.item.request_id,
                arrival=st.item.arrival_s,
                score=st.score,
                expected_output_tokens=st.item.output_tokens,
                payload=self.key(st, st.generated) if self.estimator else None,
            )
        )

    def run(self) -> SimResult:
        items, order, profile = self.items, self.order, self.profile
        next_arrival = 0
        while len(self.results) < len(items):
            while next_arrival < len(order) and items[order[next_arrival]].arrival_s <= self.now:
                self.push(self.states[items[order[next_arrival]].request_id])
                next_arrival += 1
            admitted, prefills, cached = self.admit()
            if not self.running:  # idle: jump to the next arrival
                self.now = max(self.now, items[order[next_arrival]].arrival_s)
                continue
            decoding = len(self.running) - len(admitted)
            decode_ctx = self.kv_used - sum(self.context(st) for st in admitted)
            self.now += profile.step_time_s(decoding, decode_ctx, prefills, cached)
            self.step_ends.append(self.now)
            for st in admitted:  # their first token of this admission comes with the prefill
                if st.last_token_s is not None:  # readmitted after preemption
                    st.max_gap_s = max(st.max_gap_s, self.now - st.last_token_s)
                if st.first_token_s is None:
                    st.first_token_s = self.now
            self.grow(len(self.running))  # every running sequence now holds one more token
            self.finish()
            self.step += 1
            while self.running and self.kv_used + len(self.running) > profile.kv_capacity_tokens:
                self.preempt(self.kv_victim())  # room for one more token per sequence next step
        self.results.sort(key=lambda r: r.request_id)
        promotions = len(self.promoted_ids) if self.estimator else self.queue.promotions_total
        return SimResult(
            self.results,
            self.step,
            self.preemptions,
            promotions,
            self.now,
            self.priority_preemptions,
            self.recomputed,
            self.reused,
        )

    def admit(self) -> tuple[list[_State], list[int], list[int]]:
        """Fill the batch from the queue (preempting where allowed); this step's prefills."""
        profile, preemption = self.profile, self.preemption
        admitted: list[_State] = []
        prefills: list[int] = []
        cached: list[int] = []
        victims_this_step = 0
        while True:
            seat = len(self.running) < profile.max_num_seqs
            if preemption is not None:  # the head stays queued unless admitted: newcomers may outrank it
                cand = self.queue.peek(self.now)
            elif seat:
                cand = self.held if self.held is not None else self.queue.pop(self.now)
                self.held = None
            else:
                break
            if cand is None:
                break
            st = self.states[cand.request_id]
            ctx = st.item.prompt_tokens + st.generated
            hit = min(self.cache.cached(st.item.request_id), ctx - 1) if self.cache else 0
            decoding = len(self.running) - len(admitted)
            budget = profile.max_batched_tokens - decoding - sum(prefills)
            fits_budget = ctx - hit <= budget or (not prefills and decoding == 0)
            kv_short = self.kv_used + ctx + 1 - profile.kv_capacity_tokens
            victims: list[_State] = []
            if (
                fits_budget
                and (not seat or kv_short > 0)
                and preemption is not None
                and not cand.promoted
                and victims_this_step < preemption.max_per_step
            ):  # promoted: next free seat, no preempting
                victims = self.victims(st, int(not seat), kv_short)
            if not fits_budget or (not victims and (not seat or kv_short > 0)):
                if preemption is None:
                    self.held = cand
                break
            if preemption is not None:
                popped = self.queue.pop(self.now)
                assert popped is cand
            for victim in victims:
                self.preempt(victim, priority=True)
            victims_this_step += len(victims)
            if cand.promoted:
                st.protected = True
                self.promoted_ids.add(st.item.request_id)
            self.admit_one(st, ctx, hit)
            admitted.append(st)
            prefills.append(ctx - hit)
            cached.append(hit)
        return admitted, prefills, cached

    def victims(self, st: _State, seats_short: int, kv_short: int) -> list[_State]:
        """Running requests to displace for `st` (none protected by the starvation guard)."""
        assert self.preemption is not None
        threshold = self.queue.starvation_threshold
        running = [
            Running(
                rid,
                self.key(r, r.generated + self.step - r.admit_step),
                self.step - r.admit_step,
                r.preemptions,
                r.protected or 0 < threshold < self.now - r.item.arrival_s,
                self.context(r),
            )
            for rid, r in self.running.items()
            if r.admit_step < self.step
        ]
        chosen = choose_victims(self.key(st, st.generated), running, seats_short, kv_short, self.preemption)
        return [self.running[rid] for rid in chosen] if chosen else []

    def admit_one(self, st: _State, ctx: int, hit: int) -> None:
        rid = st.item.request_id
        st.admit_step = self.step
        self.running[rid] = st
        heapq.heappush(
            self.finish_heap, (self.step + st.item.output_tokens - st.generated - 1, st.version, rid)
        )
        if st.preemptions:
            self.recomputed += ctx - hit
            self.reused += hit
        if self.cache:
            self.cache.take(rid)
        self.grow(ctx)

    def grow(self, tokens: int) -> None:
        self.kv_used += tokens
        if self.cache:  # allocations evict cached blocks, least recently released first
            self.cache.evict_to(self.profile.kv_capacity_tokens - self.kv_used)

    def finish(self) -> None:
        while self.finish_heap and self.finish_heap[0][0] <= self.step:
            _, version, rid = heapq.heappop(self.finish_heap)
            st = self.states[rid]
            if version != st.version or rid not in self.running:
                continue
            del self.running[rid]
            # token conservation across admissions: exactly its length, none lost or repeated
            assert st.generated + self.step - st.admit_step + 1 == st.item.output_tokens, rid
            ctx = self.context(st) + 1
            self.kv_used -= ctx
            if self.cache:
                self.cache.release(None, ctx)
            gap = _max_gap(self.step_ends, st.admit_step, self.step)
            assert st.first_token_s is not None
            self.results.append(
                RequestResult(
                    rid,
                    st.item.arrival_s,
                    st.first_token_s,
                    self.now,
                    st.item.output_tokens,
                    max(st.max_gap_s, gap),
                )
            )

    def kv_victim(self) -> _State:
        """Under KV pressure: the newest request (vLLM), or the worst unprotected one when preemptive."""
        if self.estimator is not None:
            pool = [r for r in self.running.values() if not r.protected] or list(self.running.values())
            return max(pool, key=lambda r: self.key(r, r.generated + self.step - r.admit_step))
        return next(reversed(self.running.values()))

    def preempt(self, st: _State, priority: bool = False) -> None:
        rid = st.item.request_id
        ctx = self.context(st)
        st.max_gap_s = max(st.max_gap_s, _max_gap(self.step_ends, st.admit_step, self.step - 1))
        st.generated += self.step - st.admit_step
        st.last_token_s = self.now
        st.version += 1
        st.preemptions += 1
        self.preemptions += 1
        self.priority_preemptions += priority
        del self.running[rid]
        self.kv_used -= ctx
        if self.cache:
            self.cache.release(rid, ctx)
        self.push(st)


def _max_gap(step_ends: list[float], first: int, last: int) -> float:
    """Largest gap between consecutive token times of a sequence emitting at steps first..last."""
    if last <= first:
        return 0.0
    return max(step_ends[k] - step_ends[k - 1] for k in range(first + 1, last + 1))
