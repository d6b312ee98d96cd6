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
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from ltr_sidecar.bench.engine_model import EngineProfile
from ltr_sidecar.bench.metrics import RequestResult
from ltr_sidecar.bench.workload import WorkItem
from ltr_sidecar.scheduling import QueueItem, RankQueue


@dataclass
class _State:
    """Progress of one request across admissions."""

    item: WorkItem
    score: float
    generated: int = 0  # tokens emitted before the current admission
    admit_step: int = -1  # step whose end emits this admission's first token
    first_token_s: float | None = None
    last_token_s: float | None = None
    max_gap_s: float = 0.0
    version: int = 0  # bumps on preemption, invalidating its finish-heap entry
    preemptions: int = 0


@dataclass(frozen=True)
class SimResult:
    """Per-request results plus engine counters of one simulation."""

    results: list[RequestResult]
    steps: int
    preemptions: int
    promotions: int
    end_s: float


def simulate(
    items: Sequence[WorkItem],
    profile: EngineProfile,
    policy: str = "fcfs",
    scores: Sequence[float] | None = None,
    starvation_threshold_s: float = 0.0,
) -> SimResult:
    """Run `items` through the engine model with the queue `policy`; returns per-request timings.

    `scores[i]` is the predictor score of `items[i]` (`ltr.contract` convention); the `oracle` policy uses
    the true output length instead.
    """
    if scores is not None and len(scores) != len(items):
        raise ValueError(f"{len(scores)} scores for {len(items)} requests")
    if not items:
        return SimResult([], 0, 0, 0, 0.0)
    kv_cap = profile.kv_capacity_tokens
    for w in items:
        if w.prompt_tokens + w.output_tokens > kv_cap:
            raise ValueError(
                f"request {w.request_id} needs {w.prompt_tokens + w.output_tokens} KV tokens, "
                f"more than the engine's {kv_cap}"
            )
    order = sorted(range(len(items)), key=lambda i: (items[i].arrival_s, i))
    states = {
        items[i].request_id: _State(items[i], float(scores[i]) if scores is not None else 0.0) for i in order
    }
    queue = RankQueue(policy, starvation_threshold=starvation_threshold_s)
    running: dict[str, _State] = {}  # insertion order = admission order (preempt from the end)
    finish_heap: list[tuple[int, int, str]] = []  # (finishing step, version, request id)
    step_ends: list[float] = []
    kv_used = 0
    now, step, next_arrival, done = 0.0, 0, 0, 0
    held: QueueItem | None = None
    preemptions = 0
    results: list[RequestResult] = []

    def context(st: _State) -> int:
        return st.item.prompt_tokens + st.generated + (step - st.admit_step)

    while done < len(items):
        while next_arrival < len(order) and items[order[next_arrival]].arrival_s <= now:
            w = items[order[next_arrival]]
            st = states[w.request_id]
            queue.push(
                QueueItem(
                    w.request_id, arrival=w.arrival_s, score=st.score, expected_output_tokens=w.output_tokens
                )
            )
            next_arrival += 1
        # -- admission ------------------------------------------------------------------------
        decoding = len(running)
        budget = profile.max_batched_tokens - decoding
        prefills: list[int] = []
        while decoding + len(prefills) < profile.max_num_seqs:
            cand = held if held is not None else queue.pop(now)
            held = None
            if cand is None:
                break
            st = states[cand.request_id]
            need = st.item.prompt_tokens + st.generated
            fits_budget = need <= budget or (not prefills and decoding == 0)
            if not fits_budget or kv_used + need + 1 > kv_cap:
                held = cand
                break
            st.admit_step = step
            running[cand.request_id] = st
            heapq.heappush(
                finish_heap, (step + st.item.output_tokens - st.generated - 1, st.version, cand.request_id)
            )
            prefills.append(need)
            budget -= need
            kv_used += need
        if not running:  # idle: jump to the next arrival
            now = max(now, items[order[next_arrival]].arrival_s)
            continue
        # -- one engine step -----------------------------------------------------------------
        decode_ctx = kv_used - sum(prefills)
        dt = profile.step_time_s(decoding, decode_ctx, prefills)
        now += dt
        step_ends.append(now)
        for rid in list(running)[decoding:]:  # the newly admitted: their first token this step
            st = running[rid]
            if st.last_token_s is not None:  # readmitted after preemption
                st.max_gap_s = max(st.max_gap_s, now - st.last_token_s)
            if st.first_token_s is None:
                st.first_token_s = now
        kv_used += len(running)  # every running sequence now holds one more token
        while finish_heap and finish_heap[0][0] <= step:
            _, version, rid = heapq.heappop(finish_heap)
            st = states[rid]
            if version != st.version or rid not in running:
                continue
            del running[rid]
            kv_used -= context(st) + 1
            gap = _max_gap(step_ends, st.admit_step, step)
            assert st.first_token_s is not None
            results.append(
                RequestResult(
                    rid,
                    st.item.arrival_s,
                    st.first_token_s,
                    now,
                    st.item.output_tokens,
                    max(st.max_gap_s, gap),
                )
            )
            done += 1
        step += 1
        # -- preemption: room for one more token per running sequence next step --------------
        while running and kv_used + len(running) > kv_cap:
            rid = next(reversed(running))
            st = running.pop(rid)
            ctx = context(st)
            st.max_gap_s = max(st.max_gap_s, _max_gap(step_ends, st.admit_step, step - 1))
            st.generated += step - st.admit_step
            st.last_token_s = now
            st.version += 1
            st.preemptions += 1
            preemptions += 1
            kv_used -= ctx
            queue.push(
                QueueItem(
                    rid,
                    arrival=st.item.arrival_s,
                    score=st.score,
                    expected_output_tokens=st.item.output_tokens,
                )
            )
    results.sort(key=lambda r: r.request_id)
    return SimResult(results, step, preemptions, queue.promotions_total, now)


def _max_gap(step_ends: list[float], first: int, last: int) -> float:
    """Largest gap between consecutive token times of a sequence emitting at steps first..last."""
    if last <= first:
        return 0.0
    return max(step_ends[k] - step_ends[k - 1] for k in range(first + 1, last + 1))
