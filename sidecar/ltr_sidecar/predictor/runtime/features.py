"""Hashed n-gram features for the fast CPU ranker (pure, deterministic across processes).

Three feature groups per prompt, each a bag of bucket ids: word uni+bigrams, character 3/4-grams
(over UTF-8 bytes, vectorised with numpy) and coarse shape features (log length, lines, code fences).
"""

from __future__ import annotations

import math
import zlib

import numpy as np

_P = np.uint64(1099511628211)  # FNV prime
_GROUP_SALT = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))
NUM_GROUPS = 3


def truncate(text: str, max_chars: int) -> str:
    """Keep the head (2/3) and tail (1/3) of a long prompt: instructions sit at either end."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    head = (2 * max_chars) // 3
    return text[:head] + "\n" + text[len(text) - (max_chars - head) :]


def _mix(h: np.ndarray, salt: np.uint64) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (h ^ salt) * np.uint64(0xFF51AFD7ED558CCD)
        x ^= x >> np.uint64(33)
        x *= np.uint64(0xC4CEB9FE1A85EC53)
        x ^= x >> np.uint64(29)
    return x


_POW = np.ones(64, dtype=np.uint64)
with np.errstate(over="ignore"):
    for _k in range(1, 64):
        _POW[_k] = _POW[_k - 1] * _P
_DIGITS = tuple(str(d).encode() for d in range(10))


def word_ids(text: str, buckets: int) -> np.ndarray:
    """Hashed word unigrams and bigrams. Words are runs of ASCII letters/digits/'_' or non-ASCII bytes;
    every other non-space byte is a one-byte token. Vectorised: no per-word Python work."""
    b = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    is_word = (
        (b >= 0x80) | ((b >= 48) & (b <= 57)) | ((b >= 97) & (b <= 122)) | ((b >= 65) & (b <= 90)) | (b == 95)
    )
    is_space = (b == 32) | (b == 10) | (b == 9) | (b == 13)
    is_punct = ~is_word & ~is_space
    prev_word = np.concatenate([[False], is_word[:-1]])
    start = (is_word & ~prev_word) | is_punct
    keep = np.flatnonzero(is_word | is_punct)
    if len(keep) == 0:
        return np.zeros(0, dtype=np.int64)
    tok = (np.cumsum(start) - 1)[keep]
    starts = np.flatnonzero(start)
    pos = np.minimum(keep - starts[tok], 63)
    seg = np.flatnonzero(np.diff(tok, prepend=-1))
    with np.errstate(over="ignore"):
        vals = (b[keep].astype(np.uint64) + np.uint64(1)) * _POW[pos]
        h = np.add.reduceat(vals, seg)
        bi = h[:-1] * _P + h[1:] + np.uint64(7)
    allh = np.concatenate([h, bi])
    return (_mix(allh, _GROUP_SALT[0]) % np.uint64(buckets)).astype(np.int64)


def char_ids(text: str, buckets: int, ns: tuple[int, ...] = (3, 4)) -> np.ndarray:
    b = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint64)
    parts = []
    with np.errstate(over="ignore"):
        for n in ns:
            if len(b) < n:
                continue
            m = len(b) - n + 1
            h = np.full(m, np.uint64(n), dtype=np.uint64)
            for k in range(n):
                h = h * _P + b[k : k + m]
            parts.append(h)
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return (_mix(np.concatenate(parts), _GROUP_SALT[1]) % np.uint64(buckets)).astype(np.int64)


def shape_ids(text: str, buckets: int) -> np.ndarray:
    n_chars = len(text)
    n_words = len(text.split())
    head = text[:2000].encode("utf-8")
    tokens = [
        f"c{int(2 * math.log2(n_chars + 1))}",
        f"w{int(2 * math.log2(n_words + 1))}",
        f"l{min(int(math.log2(text.count(chr(10)) + 1)), 8)}",
        f"f{min(text.count('```'), 4)}",
        f"q{min(text.count('?'), 3)}",
        f"d{min(sum(head.count(d) for d in _DIGITS) // 10, 5)}",
    ]
    h = np.fromiter((zlib.crc32(t.encode()) for t in tokens), dtype=np.uint64, count=len(tokens))
    return (_mix(h, _GROUP_SALT[2]) % np.uint64(buckets)).astype(np.int64)


def featurize(text: str, buckets: int, max_chars: int) -> list[np.ndarray]:
    """The three id bags (word, char, shape) of one prompt."""
    t = truncate(text, max_chars)
    low = t.lower()
    return [word_ids(low, buckets), char_ids(low, buckets), shape_ids(text, buckets)]
