"""Surface-neutral request/response types shared by the core and the gRPC/HTTP surfaces.

The core (`SchedulerCore`) speaks only these types; each surface translates its wire format
(protobuf, OpenAI JSON) to and from them, and maps `SidecarError.code` (`ltr_sidecar.errors`) to its
status codes. Scores follow `ltr.contract`'s convention.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from ltr_sidecar.sampling import SamplingParams
from ltr_sidecar.scheduling import RankQueue


@dataclass
class SubmitRequest:
    """One generation request, as the core sees it.

    Exactly one of `prompt` (completions) or `messages` (chat, OpenAI format dicts with `role`
    and `content`) is set. `deadline` is a Unix timestamp (seconds) or None. `sampling` holds the
    engine pass-through parameters (validated when built).
    """

    request_id: str
    max_tokens: int
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    priority: int = 0
    deadline: float | None = None
    expected_output_tokens: int | None = None
    model: str | None = None
    no_trace: bool = False

    def rank_text(self) -> str:
        """The text the predictor scores: the prompt, or the chat messages joined."""
        if self.prompt is not None:
            return self.prompt
        return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in self.messages or [])


@dataclass
class SchedulingInfo:
    """Explainability for one scheduling decision."""

    score: float
    rank_at_arrival: int
    queue_wait_s: float
    promoted: bool
    policy: str
    predictor_version: str
    priority: int
    predicted_output_tokens: float | None = None  # from the predictor's calibration; None = unknown


@dataclass
class TokenChunk:
    """Newly generated text from the engine stream."""

    text: str
    tokens: int = 1


@dataclass
class FinalResult:
    """Last event of every stream. finish_reason: "stop" | "length" | "cancelled" | "error"."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    scheduling: SchedulingInfo
    ttft_s: float
    total_s: float
    error: str = ""


StreamEvent = TokenChunk | FinalResult


@dataclass
class QueueEntryInfo:
    """One queued request in a snapshot."""

    request_id: str
    score: float
    priority: int
    waited_s: float
    promoted: bool


@dataclass
class QueueSnapshot:
    """Mirrors ltr.v1.QueueSnapshot (durations in seconds)."""

    queue_length: int
    in_flight: int
    max_concurrency: int
    per_band: dict[int, int]
    oldest_wait_s: float
    predictor_version: str
    policy: str
    starvation_threshold_s: float
    entries: list[QueueEntryInfo] = field(default_factory=list)
    draining: bool = False

    @classmethod
    def of(
        cls,
        queue: RankQueue,
        now: float,
        *,
        in_flight: int,
        max_concurrency: int,
        predictor_version: str,
        policy: str,
        draining: bool,
        limit: int = 0,
    ) -> QueueSnapshot:
        """The snapshot of `queue` at `now`, with its first `limit` entries in serving order."""
        entries = [
            QueueEntryInfo(
                item.request_id,
                item.score,
                item.priority,
                max(0.0, now - item.arrival),
                queue.is_due(item, now),
            )
            for item in itertools.islice(queue.ordered(now), limit)
        ]
        return cls(
            queue_length=len(queue),
            in_flight=in_flight,
            max_concurrency=max_concurrency,
            per_band=queue.per_band(),
            oldest_wait_s=queue.peek_wait(now),
            predictor_version=predictor_version,
            policy=policy,
            starvation_threshold_s=queue.starvation_threshold,
            entries=entries,
            draining=draining,
        )


@dataclass
class PredictorStatus:
    """Mirrors ltr.v1.PredictorStatus (loaded_at: Unix seconds, None when nothing is loaded)."""

    version: str
    backbone: str
    loaded_at: float | None
    last_error: str
    online_kendall_tau: float
    online_samples: int
    fallback_fcfs: bool = False
