"""RankQueue: priority bands, a policy order within each band, starvation prevention.

Order of service:
1. higher priority band first (bands are explicit user priorities; starvation never crosses them);
2. within a band, *promoted* requests first, FIFO by arrival. A request is promoted once it has
   waited longer than `starvation_threshold` seconds (0 disables promotion);
3. then un-promoted requests by the policy's key (e.g. highest predictor score first).

Time is passed in explicitly (`now`), so the same code runs on the wall clock in the sidecar and on
virtual time in the simulator. Push and pop are O(log n); promotion checks are amortised O(1).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterator

from ltr_sidecar.scheduling.item import QueueItem
from ltr_sidecar.scheduling.policies import Policy, get_policy


class QueueFullError(Exception):
    """The queue holds max_length requests already (maps to RESOURCE_EXHAUSTED / HTTP 429)."""


class _Band:
    """Requests of one priority band: a policy heap, an arrival FIFO, a promoted FIFO."""

    def __init__(self) -> None:
        self.heap: list[tuple[tuple[float, ...], int, QueueItem]] = []
        self.by_arrival: deque[QueueItem] = deque()
        self.promoted: deque[QueueItem] = deque()
        self.size = 0


class RankQueue:
    """A bounded, rank-ordered queue of requests with starvation prevention."""

    def __init__(
        self, policy: str | Policy = "ltr", starvation_threshold: float = 0.0, max_length: int | None = None
    ) -> None:
        if starvation_threshold < 0:
            raise ValueError("starvation_threshold must be >= 0 seconds (0 disables it)")
        if max_length is not None and max_length < 1:
            raise ValueError("max_length must be >= 1 (or None for unbounded)")
        self.policy = get_policy(policy) if isinstance(policy, str) else policy
        self.starvation_threshold = float(starvation_threshold)
        self.max_length = max_length
        self._bands: dict[int, _Band] = {}
        self._index: dict[str, QueueItem] = {}
        self._seq = itertools.count()
        self.promotions_total = 0

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._index

    def push(self, item: QueueItem) -> None:
        """Add a request. Raises QueueFullError when full, ValueError on a duplicate id."""
        if item.request_id in self._index:
            raise ValueError(f"request id {item.request_id!r} is already queued")
        if self.max_length is not None and len(self._index) >= self.max_length:
            raise QueueFullError(f"queue is full ({self.max_length} requests waiting); retry later")
        item.seq = next(self._seq)
        item.key = self.policy.key(item)
        band = self._bands.setdefault(item.priority, _Band())
        heapq.heappush(band.heap, (item.key, item.seq, item))
        band.by_arrival.append(item)
        band.size += 1
        self._index[item.request_id] = item

    def rank_of(self, request_id: str, now: float) -> int:
        """Position the request would be served at (0 = next), as in `ordered`. O(n), no sorting."""
        target = self._index[request_id]
        target_due = target.promoted or self._overdue(target, now)
        position = 0
        for item in self._index.values():
            if item is target:
                continue
            if item.priority != target.priority:
                position += item.priority > target.priority
                continue
            due = item.promoted or self._overdue(item, now)
            if due != target_due:
                position += due
            elif due:
                position += (item.arrival, item.seq) < (target.arrival, target.seq)
            else:
                position += (item.key, item.seq) < (target.key, target.seq)
        return position

    def remove(self, request_id: str) -> QueueItem | None:
        """Remove a queued request (cancellation/deadline). Returns it, or None if not queued."""
        item = self._index.pop(request_id, None)
        if item is None:
            return None
        item.removed = True
        self._bands[item.priority].size -= 1
        return item

    def pop(self, now: float) -> QueueItem | None:
        """Take the next request to admit, or None when empty."""
        for priority in sorted((p for p, b in self._bands.items() if b.size), reverse=True):
            band = self._bands[priority]
            self._promote(band, now)
            item = self._take(band)
            if item is not None:
                del self._index[item.request_id]
                band.size -= 1
                item.removed = True
                return item
        return None

    def peek(self, now: float) -> QueueItem | None:
        """The request `pop(now)` would return, left in the queue (promotion is applied as in pop)."""
        for priority in sorted((p for p, b in self._bands.items() if b.size), reverse=True):
            band = self._bands[priority]
            self._promote(band, now)
            head = self._first_live(band.promoted)
            if head is not None:
                return head
            while band.heap and (band.heap[0][2].removed or band.heap[0][2].promoted):
                heapq.heappop(band.heap)
            if band.heap:
                return band.heap[0][2]
        return None

    def peek_wait(self, now: float) -> float:
        """Wait of the oldest queued request (0 when empty)."""
        heads = [
            self._first_live(fifo)
            for b in self._bands.values()
            if b.size
            for fifo in (b.promoted, b.by_arrival)
        ]
        arrivals = [h.arrival for h in heads if h is not None]
        return max(0.0, now - min(arrivals)) if arrivals else 0.0

    def per_band(self) -> dict[int, int]:
        return {p: b.size for p, b in self._bands.items() if b.size}

    def ordered(self, now: float) -> Iterator[QueueItem]:
        """Queued requests in service order (does not modify the queue)."""
        for priority in sorted(self._bands, reverse=True):
            band = self._bands[priority]
            # an item sits in exactly one of the two FIFOs (promotion moves it to `promoted`)
            live = [i for fifo in (band.promoted, band.by_arrival) for i in fifo if not i.removed]
            due = [i for i in live if i.promoted or self._overdue(i, now)]
            due_ids = {id(i) for i in due}
            yield from sorted(due, key=lambda i: (i.arrival, i.seq))
            yield from sorted((i for i in live if id(i) not in due_ids), key=lambda i: (i.key, i.seq))

    def is_due(self, item: QueueItem, now: float) -> bool:
        """Promoted already, or waited past the starvation threshold (served FIFO ahead of the rest)."""
        return item.promoted or self._overdue(item, now)

    # -- internals -------------------------------------------------------------------------------
    def _overdue(self, item: QueueItem, now: float) -> bool:
        return self.starvation_threshold > 0 and now - item.arrival > self.starvation_threshold

    def _promote(self, band: _Band, now: float) -> None:
        if self.starvation_threshold <= 0:
            return
        while band.by_arrival:
            head = band.by_arrival[0]
            if head.removed:
                band.by_arrival.popleft()
                continue
            if not self._overdue(head, now):
                break
            band.by_arrival.popleft()
            if not head.promoted:
                head.promoted = True
                self.promotions_total += 1
                band.promoted.append(head)

    @staticmethod
    def _first_live(items: deque[QueueItem]) -> QueueItem | None:
        while items and items[0].removed:
            items.popleft()
        return items[0] if items else None

    @staticmethod
    def _take(band: _Band) -> QueueItem | None:
        while band.promoted:
            item = band.promoted.popleft()
            if not item.removed:
                return item
        while band.heap:
            _, _, item = heapq.heappop(band.heap)
            if not item.removed and not item.promoted:
                return item
        return None
