"""Rebuild the shipped sample (train.jsonl, heldout.jsonl) from the shared data folder.

Only permissively licensed sources are used: GPTeacher (MIT), Arena-Hard v2.0 (Apache-2.0) and
Anthropic HH harmless-base test (MIT). Selection is deterministic (hash of the text), no randomness.
Usage: python sidecar/ltr_sidecar/data/sample/build_sample.py SHARED_DATA_DIR
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent
MAX_PROMPT_CHARS = 3000
SOURCES = [
    # (file, per-source count, source label, licence)
    ("arena-hard-v2.0/responses/llama3.1-8b-instruct.jsonl", 450, "arena-hard-v2.0", "Apache-2.0"),
    ("gpteacher-gpt4/codegen.jsonl", 300, "gpteacher-codegen", "MIT"),
    ("gpteacher-gpt4/roleplay.jsonl", 300, "gpteacher-roleplay", "MIT"),
    ("gpteacher-gpt4/toolformer.jsonl", 150, "gpteacher-toolformer", "MIT"),
    ("hh-rlhf-harmless-base-test/test.jsonl", 300, "hh-rlhf-harmless-base", "MIT"),
]


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    rows = []
    for rel, count, label, licence in SOURCES:
        recs = [json.loads(line) for line in (root / rel).open(encoding="utf-8") if line.strip()]
        if label.startswith("hh"):
            recs = [r for r in recs if r.get("variant") == "chosen"]
        recs = [r for r in recs if 0 < len(r["prompt"]) <= MAX_PROMPT_CHARS and r.get("response_words")]
        recs.sort(key=lambda r: _key(r["prompt"]))
        for r in recs[:count]:
            rows.append(
                {
                    "prompt": r["prompt"],
                    "response_words": int(r["response_words"]),
                    "model": r.get("model"),
                    "source": label,
                    "license": licence,
                }
            )
    rows.sort(key=lambda r: _key(r["prompt"] + r["source"]))
    n_held = len(rows) // 5
    for name, part in (("heldout.jsonl", rows[:n_held]), ("train.jsonl", rows[n_held:])):
        with (OUT / name).open("w", encoding="utf-8") as fh:
            for r in part:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{name}: {len(part)} examples")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
