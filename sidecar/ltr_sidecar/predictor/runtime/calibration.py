"""Score → expected output length: isotonic regression (pool adjacent violators) of length on score.

A predictor's score is a rank key where a higher score means a SHORTER output (`ltr.contract`), so the
fitted map is monotone non-increasing in score. Each pooled block becomes one knot at its mean score
with its mean length; between knots the map is linear, beyond the end knots it is clamped, so a
prediction always lies within [min, max] of the observed lengths. Blocks are merged (least increase in
squared error first) until at most `max_knots` remain, which keeps the manifest entry small.

Stored in an artifact's `predictor.json` under `"calibration"` (`Calibration.to_dict`); read back with
`Calibration.from_dict` (which refuses a malformed entry with `PredictorLoadError`) or, for a loaded
predictor, `calibration_of(predictor)`. Pure standard library: the sidecar imports this without torch.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ltr_sidecar.predictor.runtime.artifact import PredictorLoadError

UNITS = ("tokens", "words")
DEFAULT_MAX_KNOTS = 64
#: The most knots a manifest entry may hold (a larger one is refused at load).
MAX_KNOTS_LIMIT = 1024
#: Output tokens per whitespace word, measured as the ratio of sums (total response_tokens / total
#: response_words) over the 750 llama3.1-8b-instruct answers of Arena-Hard v2.0
#: (../shared/data/arena-hard-v2.0/responses/llama3.1-8b-instruct.jsonl): 1.979 (the per-answer
#: median is 1.677; code and non-English answers pull the mean up). A ratio of sums, because the
#: sidecar sums predictions (the queue's predicted tokens).
TOKENS_PER_WORD = 1.98


@dataclass(frozen=True)
class Calibration:
    """A monotone non-increasing map score → expected output length (see the module doc).

    `xs`: knot scores, strictly increasing; `ys`: expected lengths at the knots in `unit`
    ("tokens" or "words"), non-increasing; `n`: samples fitted; `tokens_per_word`: the conversion
    `expected_tokens` applies when `unit == "words"`."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]
    unit: str = "tokens"
    n: int = 0
    tokens_per_word: float = TOKENS_PER_WORD

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(problem)

    def expected_length(self, score: float) -> float:
        """Expected output length in `unit` for `score` (linear between knots, clamped at the ends)."""
        xs, ys = self.xs, self.ys
        s = float(score)
        if s >= xs[-1] or s != s:  # NaN: the shortest end, like a maximal score
            return ys[-1]
        if s <= xs[0]:
            return ys[0]
        i = bisect.bisect_right(xs, s)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return y0 + (y1 - y0) * (s - x0) / (x1 - x0)

    def expected_tokens(self, score: float) -> float:
        """Expected output tokens for `score` (words converted by `tokens_per_word`)."""
        length = self.expected_length(score)
        return length * self.tokens_per_word if self.unit == "words" else length

    def to_dict(self) -> dict[str, object]:
        """The manifest entry (JSON-ready)."""
        return {
            "method": "isotonic-pav",
            "unit": self.unit,
            "n": self.n,
            "tokens_per_word": self.tokens_per_word,
            "xs": list(self.xs),
            "ys": list(self.ys),
        }

    @classmethod
    def from_dict(cls, raw: object, where: str = "calibration") -> Calibration:
        """Parse a manifest entry; a malformed one raises `PredictorLoadError` naming the problem."""
        if not isinstance(raw, Mapping):
            raise PredictorLoadError(f"{where}: must be a JSON object, got {type(raw).__name__}")
        xs, ys = raw.get("xs"), raw.get("ys")
        if not isinstance(xs, list) or not isinstance(ys, list):
            raise PredictorLoadError(f"{where}: 'xs' and 'ys' must be lists of numbers")
        if len(xs) > MAX_KNOTS_LIMIT or len(ys) > MAX_KNOTS_LIMIT:
            raise PredictorLoadError(
                f"{where}: too many knots ({max(len(xs), len(ys))}, at most {MAX_KNOTS_LIMIT})"
            )
        numbers = [*xs, *ys, raw.get("n", 0), raw.get("tokens_per_word", TOKENS_PER_WORD)]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
            raise PredictorLoadError(f"{where}: 'xs', 'ys', 'n' and 'tokens_per_word' must be numbers")
        n = raw.get("n", 0)
        if not isinstance(n, int):
            raise PredictorLoadError(f"{where}: 'n' must be an integer, got {n!r}")
        try:
            return cls(
                xs=tuple(float(v) for v in xs),
                ys=tuple(float(v) for v in ys),
                unit=str(raw.get("unit", "")),
                n=n,
                tokens_per_word=float(raw.get("tokens_per_word", TOKENS_PER_WORD)),
            )
        except ValueError as exc:
            raise PredictorLoadError(f"{where}: {exc}") from None


def _problem(c: Calibration) -> str:
    """What is wrong with `c` ("" when nothing)."""
    if c.unit not in UNITS:
        return f"unknown unit {c.unit!r} (want one of {', '.join(UNITS)})"
    if len(c.xs) != len(c.ys):
        return f"length mismatch: {len(c.xs)} xs vs {len(c.ys)} ys"
    if not c.xs:
        return "no knots"
    if len(c.xs) > MAX_KNOTS_LIMIT:
        return f"too many knots ({len(c.xs)}, at most {MAX_KNOTS_LIMIT})"
    if not all(math.isfinite(v) for v in (*c.xs, *c.ys)):
        return "knots must be finite numbers (NaN or infinity found)"
    if any(b <= a for a, b in itertools.pairwise(c.xs)):
        return "knot scores (xs) must be strictly increasing"
    if any(b > a for a, b in itertools.pairwise(c.ys)):
        return "non-monotone: expected lengths (ys) must not increase with the score"
    if c.ys[-1] < 0:
        return "expected lengths must be >= 0"
    if not (math.isfinite(c.tokens_per_word) and c.tokens_per_word > 0):
        return f"tokens_per_word must be a positive number, got {c.tokens_per_word}"
    if c.n < 0:
        return f"n must be >= 0, got {c.n}"
    return ""


def fit_calibration(
    scores: Sequence[float],
    lengths: Sequence[float],
    unit: str = "tokens",
    max_knots: int = DEFAULT_MAX_KNOTS,
    tokens_per_word: float = TOKENS_PER_WORD,
) -> Calibration:
    """Least-squares non-increasing fit of `lengths` on `scores` with at most `max_knots` knots.

    Raises ValueError for fewer than 2 samples, unequal lengths, non-finite values, negative lengths,
    an unknown unit or `max_knots` outside 1..MAX_KNOTS_LIMIT."""
    if len(scores) != len(lengths):
        raise ValueError(f"scores and lengths differ in length ({len(scores)} vs {len(lengths)})")
    if len(scores) < 2:
        raise ValueError(f"calibration needs at least 2 samples, got {len(scores)}")
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r} (want one of {', '.join(UNITS)})")
    if not 1 <= max_knots <= MAX_KNOTS_LIMIT:
        raise ValueError(f"max_knots must be within 1..{MAX_KNOTS_LIMIT}, got {max_knots}")
    pairs = sorted((float(s), float(n)) for s, n in zip(scores, lengths, strict=True))
    if not all(math.isfinite(s) and math.isfinite(n) for s, n in pairs):
        raise ValueError("scores and lengths must be finite numbers")
    if pairs and min(n for _, n in pairs) < 0:
        raise ValueError("lengths must be >= 0")
    blocks = _merge(pool_adjacent_violators(pairs), max_knots)
    return Calibration(
        xs=tuple(sx / w for sx, _, w in blocks),
        ys=tuple(sy / w for _, sy, w in blocks),
        unit=unit,
        n=len(pairs),
        tokens_per_word=tokens_per_word,
    )


Block = tuple[float, float, float]  # (sum of scores, sum of lengths, count)


def pool_adjacent_violators(pairs: Sequence[tuple[float, float]]) -> list[Block]:
    """Pool adjacent violators over pairs sorted by score: blocks with strictly decreasing mean length.

    Equal scores are pooled first (one score, one prediction); a block whose mean is not below its
    left neighbour's is merged into it. The one PAV of the project (the simulator's increasing fits
    negate their y)."""
    blocks: list[list[float]] = []
    last_score = math.nan
    for s, n in pairs:
        if s == last_score:
            blocks[-1][0] += s
            blocks[-1][1] += n
            blocks[-1][2] += 1
        else:
            blocks.append([s, n, 1.0])
            last_score = s
        while len(blocks) > 1 and blocks[-2][1] * blocks[-1][2] <= blocks[-1][1] * blocks[-2][2]:
            sx, sy, w = blocks.pop()
            blocks[-1][0] += sx
            blocks[-1][1] += sy
            blocks[-1][2] += w
    return [(b[0], b[1], b[2]) for b in blocks]


def _merge_cost(a: Block, b: Block) -> float:
    """Increase of the squared error when blocks `a` and `b` are pooled."""
    ma, mb = a[1] / a[2], b[1] / b[2]
    return a[2] * b[2] / (a[2] + b[2]) * (ma - mb) ** 2


def _merge(blocks: list[Block], max_knots: int) -> list[Block]:
    """Pool adjacent blocks, cheapest first, until at most `max_knots` remain (order is kept)."""
    end = len(blocks)
    if end <= max_knots:
        return blocks
    cur: list[Block | None] = list(blocks)
    nxt, prv = list(range(1, end + 1)), list(range(-1, end - 1))
    stamp = [0] * end  # bumped when a block absorbs its right neighbour: older heap entries are stale
    heap = [(_merge_cost(blocks[i], blocks[i + 1]), i, 0, 0) for i in range(end - 1)]
    heapq.heapify(heap)
    alive = end
    while alive > max_knots:
        _, i, si, sj = heapq.heappop(heap)
        a, j = cur[i], nxt[i]
        if a is None or j >= end or stamp[i] != si or stamp[j] != sj:
            continue
        b = cur[j]
        assert b is not None
        cur[i], cur[j] = (a[0] + b[0], a[1] + b[1], a[2] + b[2]), None
        stamp[i] += 1
        nxt[i] = nxt[j]
        if nxt[i] < end:
            prv[nxt[i]] = i
        alive -= 1
        for left in (prv[i], i):
            right = nxt[left] if left >= 0 else end
            lb, rb = (cur[left], cur[right]) if left >= 0 and right < end else (None, None)
            if lb is not None and rb is not None:
                heapq.heappush(heap, (_merge_cost(lb, rb), left, stamp[left], stamp[right]))
    return [b for b in cur if b is not None]


def calibration_of(predictor: object) -> Calibration | None:
    """The calibration a loaded predictor carries in its manifest fields (`meta["calibration"]`),
    or None when it has none (baselines, uncalibrated artifacts). A malformed entry raises
    `PredictorLoadError`."""
    meta = getattr(predictor, "meta", None)
    if not isinstance(meta, Mapping):
        return None
    raw = meta.get("calibration")
    if raw is None:
        return None
    return Calibration.from_dict(raw, where=f"predictor {getattr(predictor, 'version', '?')}: calibration")
