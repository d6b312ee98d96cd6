"""Micro-batched scoring at arrival: arrivals within `window_s` (or during a running call) share one
predictor call, run in one worker thread off the event loop.

A predictor failure never takes requests down: the batch is re-scored one prompt at a time, and only
the prompts that still fail get score 0 (FCFS order among them). Each score also comes with the
predicted output tokens of the predictor's calibration (None when it has none or the prompt is unscored).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from ltr_sidecar.errors import ErrorCode, SidecarError
from ltr_sidecar.predictor.runtime.artifact import PredictorLoadError
from ltr_sidecar.predictor.runtime.base import Predictor
from ltr_sidecar.predictor.runtime.calibration import Calibration, calibration_of
from ltr_sidecar.server.protocols import CoreMetrics

log = logging.getLogger(__name__)


class Scored(NamedTuple):
    """One prompt's score, the predictor version that gave it ("" when unscored) and its predicted
    output tokens (None when unknown: no calibration, or unscored)."""

    score: float
    version: str
    predicted_tokens: float | None = None


UNSCORED = Scored(0.0, "")


def _calibration(predictor: Predictor | None) -> Calibration | None:
    try:
        return calibration_of(predictor)
    except PredictorLoadError as exc:  # a predictor object built in code; artifacts are checked at load
        log.warning("predictor calibration ignored: %s", exc)
        return None


def _score_all(predictor: Predictor, texts: list[str]) -> list[float | None]:
    """Scores of `texts`; on a batch failure each text alone, None for those that fail (worker thread)."""
    try:
        scores = [float(x) for x in predictor.score(texts)]
        if len(scores) != len(texts):
            raise RuntimeError(f"predictor gave {len(scores)} scores for {len(texts)} prompts")
        return [s if s == s else 0.0 for s in scores]
    except Exception:
        if len(texts) == 1:
            log.exception("predictor scoring failed for one prompt; it is scored 0 (FCFS order)")
            return [None]
    return [_score_all(predictor, [t])[0] for t in texts]


class MicroBatchScorer:
    """Collects prompts, scores them in batches with the current predictor (set `predictor`)."""

    def __init__(self, window_s: float, metrics: CoreMetrics) -> None:
        self.window_s = window_s
        self.metrics = metrics
        self._current: tuple[Predictor | None, Calibration | None] = (None, None)
        self._pending: list[tuple[str, asyncio.Future[Scored]]] = []
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ltr-scorer")
        self._task: asyncio.Task[None] | None = None

    @property
    def predictor(self) -> Predictor | None:
        return self._current[0]

    @predictor.setter
    def predictor(self, predictor: Predictor | None) -> None:
        """Swap the predictor (and its calibration, read once here)."""
        self._current = (predictor, _calibration(predictor))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ltr-scorer")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(SidecarError(ErrorCode.UNAVAILABLE, "sidecar is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def score(self, texts: Sequence[str]) -> list[Scored]:
        """A `Scored` per text; `UNSCORED` when no predictor is loaded."""
        if self.predictor is None:
            return [UNSCORED] * len(texts)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in texts]
        self._pending.extend(zip(texts, futures, strict=True))
        self._wake.set()
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            if self.window_s > 0:
                await asyncio.sleep(self.window_s)
            self._wake.clear()
            batch, self._pending = self._pending, []
            batch = [(t, f) for t, f in batch if not f.done()]
            if not batch:
                continue
            predictor, cal = self._current
            texts = [t for t, _ in batch]
            start = time.perf_counter()
            results: list[Scored] = [UNSCORED] * len(texts)
            if predictor is not None:
                scores = await loop.run_in_executor(self._executor, _score_all, predictor, texts)
                version = str(predictor.version)
                results = [
                    UNSCORED if s is None else Scored(s, version, cal.expected_tokens(s) if cal else None)
                    for s in scores
                ]
            self.metrics.scoring_observed(time.perf_counter() - start, len(texts))
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
