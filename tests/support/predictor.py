"""Shared helpers of the predictor tests: a synthetic dataset whose length is a known function of
the prompt, and a JSONL writer. (A module of its own: `conftest` names clash across test folders.)"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ltr_sidecar.data.datasets import Example

FAST_SMALL = {"buckets": 1 << 14, "dim": 8}

KEYWORDS = ["tiny", "brief", "short", "modest", "medium", "long", "detailed", "exhaustive"]
LENGTHS = [5, 12, 25, 40, 70, 110, 180, 300]
FILLER = [
    "please",
    "help",
    "me",
    "with",
    "the",
    "following",
    "request",
    "about",
    "my",
    "project",
    "today",
    "thanks",
]


def synthetic_examples(n: int, seed: int = 0) -> list[Example]:
    """Prompts containing one keyword; the answer length is fixed by the keyword."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randrange(len(KEYWORDS))
        words = rng.sample(FILLER, rng.randint(3, 8))
        words.insert(rng.randrange(len(words) + 1), f"give a {KEYWORDS[k]} answer")
        out.append(
            Example(prompt=" ".join(words), length=float(LENGTHS[k]), model="synthetic", prompt_id=str(i))
        )
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_traces(d: Path, n: int, t0: float = 1_000_000.0) -> Path:
    """`n` sidecar trace lines of synthetic examples in a directory, split over a rotated file."""
    d.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "timestamp": t0 + i,
            "request_id": str(i),
            "prompt": e.prompt,
            "output_tokens": int(e.length),
            "score": 0.0,
            "predictor_version": "weak",
            "model": "m",
        }
        for i, e in enumerate(synthetic_examples(n, seed=11))
    ]
    write_jsonl(d / "traces.jsonl.1", rows[: n // 2])
    write_jsonl(d / "traces.jsonl", rows[n // 2 :])
    return d
