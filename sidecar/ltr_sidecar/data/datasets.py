"""Loading (prompt, output length) examples from dataset files: the one loader used by the predictor
trainer and the benchmarks (the sidecar's own trace files are read by `ltr_sidecar.data.traces`).

Accepted inputs (DESIGN §4):
- a JSONL file whose lines hold `prompt` and a length from `output_tokens`, `response_tokens`,
  `response_words` or `response` (whitespace words counted), in that order of preference; `model`
  optional (filter with `model_name`);
- the AlpacaEval layout: `prompts.jsonl` joined with `response_lengths_all_models.jsonl` by
  `prompt_id` (pass the directory or either file; `model_name` selects one model);
- a directory with `prompts.jsonl` + `responses/<model>.jsonl` (Arena-Hard v2.0 layout);
- any other directory: every `*.jsonl` file inside it, concatenated (e.g. `gpteacher-gpt4/`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LENGTH_FIELDS: tuple[str, ...] = ("output_tokens", "response_tokens", "response_words", "response")
#: The small permissively licensed sample shipped as package data (attribution in its README.md).
SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
SAMPLE_TRAIN = SAMPLE_DIR / "train.jsonl"
SAMPLE_HELDOUT = SAMPLE_DIR / "heldout.jsonl"
ALPACA_LENGTHS = "response_lengths_all_models.jsonl"
PROMPTS = "prompts.jsonl"


class DataError(ValueError):
    """A data file or directory that cannot be read as (prompt, length) examples."""


@dataclass(frozen=True)
class Example:
    """One prompt with the observed output length of one model's answer."""

    prompt: str
    length: float
    model: str | None = None
    prompt_id: str | None = None
    timestamp: float | None = None


def record_length(rec: dict[str, Any]) -> float | None:
    """The output length of a record (first available of LENGTH_FIELDS), or None."""
    for key in LENGTH_FIELDS:
        value = rec.get(key)
        if value is None:
            continue
        if key == "response":
            if isinstance(value, str):
                return float(len(value.split()))
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if value < 0:
            return None
        return float(value)
    return None


def iter_jsonl(path: Path, *, skip_corrupt: bool = False) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """Yield (line number, object) for each non-empty line; a corrupt line yields (n, None) when
    `skip_corrupt`, else raises DataError naming the file and line."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if skip_corrupt:
                    yield lineno, None
                    continue
                raise DataError(f"{path}: not UTF-8 text at line {lineno}") from exc
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                if skip_corrupt:
                    yield lineno, None
                    continue
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg}); expected JSONL") from exc
            if not isinstance(obj, dict):
                if skip_corrupt:
                    yield lineno, None
                    continue
                raise DataError(f"{path}:{lineno}: expected a JSON object per line, got {type(obj).__name__}")
            yield lineno, obj


def _prompt_id(rec: dict[str, Any]) -> str | None:
    for key in ("prompt_id", "conv_id", "id"):
        if key in rec and rec[key] is not None:
            return str(rec[key])
    return None


def example_from_record(rec: dict[str, Any]) -> Example | None:
    """An Example from one JSON record, or None when it lacks a prompt or a length."""
    prompt = rec.get("prompt")
    length = record_length(rec)
    if not isinstance(prompt, str) or length is None:
        return None
    model = rec.get("model")
    ts = rec.get("timestamp")
    return Example(
        prompt=prompt,
        length=length,
        model=str(model) if model is not None else None,
        prompt_id=_prompt_id(rec),
        timestamp=float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else None,
    )


def _load_plain_file(path: Path, model_name: str | None) -> list[Example]:
    out: list[Example] = []
    models: set[str] = set()
    first_bad: tuple[int, list[str]] | None = None
    for lineno, rec in iter_jsonl(path):
        assert rec is not None
        ex = example_from_record(rec)
        if ex is None:
            if first_bad is None:
                first_bad = (lineno, sorted(rec)[:12])
            continue
        if ex.model is not None:
            models.add(ex.model)
        if model_name is None or ex.model == model_name:
            out.append(ex)
    if first_bad is not None and not out and not models:
        lineno, keys = first_bad
        raise DataError(
            f"{path}:{lineno}: no usable example: each line needs a string 'prompt' and a length field "
            f"(one of {', '.join(LENGTH_FIELDS)}); found keys {keys}"
        )
    if model_name is not None and not out:
        known = ", ".join(sorted(models)[:20]) or "none (no 'model' field)"
        raise DataError(f"{path}: no records for model {model_name!r}; models in file: {known}")
    if not out:
        raise DataError(f"{path}: no examples found (empty file?)")
    return out


def _alpaca_join(root: Path, model_name: str | None) -> list[Example]:
    prompts = {}
    for lineno, rec in iter_jsonl(root / PROMPTS):
        assert rec is not None
        if "prompt_id" not in rec or not isinstance(rec.get("prompt"), str):
            raise DataError(f"{root / PROMPTS}:{lineno}: expected 'prompt_id' and 'prompt'")
        prompts[str(rec["prompt_id"])] = rec["prompt"]
    models: set[str] = set()
    out: list[Example] = []
    for lineno, rec in iter_jsonl(root / ALPACA_LENGTHS):
        assert rec is not None
        model = str(rec.get("model"))
        models.add(model)
        if model_name is not None and model != model_name:
            continue
        pid = str(rec.get("prompt_id"))
        length = record_length(rec)
        if pid not in prompts or length is None:
            raise DataError(f"{root / ALPACA_LENGTHS}:{lineno}: unknown prompt_id {pid!r} or missing length")
        out.append(Example(prompt=prompts[pid], length=length, model=model, prompt_id=pid))
    if model_name is not None and not out:
        raise DataError(
            f"{root}: no lengths for model {model_name!r}; {len(models)} models available, e.g. "
            + ", ".join(sorted(models)[:10])
        )
    return out


def _responses_dir(root: Path, model_name: str | None) -> list[Example]:
    files = sorted((root / "responses").glob("*.jsonl"))
    names = [f.stem for f in files]
    if model_name is None:
        if len(files) == 1:
            return _load_plain_file(files[0], None)
        raise DataError(f"{root}: several models' responses ({', '.join(names)}): choose one with model_name")
    if model_name not in names:
        raise DataError(f"{root}: no responses/{model_name}.jsonl; available: {', '.join(names)}")
    return _load_plain_file(root / "responses" / f"{model_name}.jsonl", None)


def load_examples(path: str | Path, model_name: str | None = None) -> list[Example]:
    """Load examples from a JSONL file or a dataset directory (see module doc); raises DataError."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data path does not exist: {p}")
    if p.is_file() and p.name in (PROMPTS, ALPACA_LENGTHS) and (p.parent / ALPACA_LENGTHS).exists():
        p = p.parent
    if p.is_file() and p.name == PROMPTS and (p.parent / "responses").is_dir():
        p = p.parent
    if p.is_dir():
        if (p / PROMPTS).exists() and (p / ALPACA_LENGTHS).exists():
            return _alpaca_join(p, model_name)
        if (p / PROMPTS).exists() and (p / "responses").is_dir():
            return _responses_dir(p, model_name)
        files = sorted(f for f in p.glob("*.jsonl") if f.is_file())
        if not files:
            raise DataError(f"{p}: directory holds no *.jsonl files")
        out: list[Example] = []
        for f in files:
            out.extend(_load_plain_file(f, model_name) if model_name is None else _filter_soft(f, model_name))
        if not out:
            raise DataError(f"{p}: no examples for model {model_name!r}")
        return out
    return _load_plain_file(p, model_name)


def _filter_soft(path: Path, model_name: str) -> list[Example]:
    try:
        return _load_plain_file(path, model_name)
    except DataError as exc:
        if "no records for model" in str(exc):
            return []
        raise


def load_many(paths: Sequence[str | Path], model_name: str | None = None) -> list[Example]:
    """Concatenate `load_examples` over several paths."""
    out: list[Example] = []
    for p in paths:
        out.extend(load_examples(p, model_name))
    return out


def alpaca_all_model_lengths(root: str | Path) -> tuple[dict[str, str], dict[str, dict[str, float]]]:
    """AlpacaEval: (prompt_id -> prompt, model -> {prompt_id -> response words}) for every model."""
    root = Path(root)
    if not ((root / PROMPTS).exists() and (root / ALPACA_LENGTHS).exists()):
        raise DataError(f"{root}: not an AlpacaEval directory ({PROMPTS} + {ALPACA_LENGTHS})")
    prompts = {str(r["prompt_id"]): str(r["prompt"]) for _, r in iter_jsonl(root / PROMPTS) if r}
    lengths: dict[str, dict[str, float]] = {}
    for _, rec in iter_jsonl(root / ALPACA_LENGTHS):
        if rec is None:
            continue
        length = record_length(rec)
        if length is not None:
            lengths.setdefault(str(rec.get("model")), {})[str(rec.get("prompt_id"))] = length
    return prompts, lengths
