"""`ltr predictor optimize`: derive a CPU-cheap artifact from an encoder (hf) predictor — dynamic int8
quantisation of the backbone's Linear layers at load time and/or a shorter input — and measure what it
costs in ranking quality and saves in latency, side by side on the same data.

The derived artifact keeps the float32 weights (files copied and re-hashed): it loads anywhere, a
retrain fine-tunes it like any version, and only inference on CPU runs in int8."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ltr_sidecar.data.datasets import Example
from ltr_sidecar.predictor.ops.evaluate import evaluate
from ltr_sidecar.predictor.runtime.artifact import PredictorLoadError, read_manifest, write_manifest
from ltr_sidecar.predictor.runtime.hf import QUANTIZATIONS
from ltr_sidecar.predictor.runtime.registry import load_predictor


def optimize_artifact(
    source: str | Path,
    out: str | Path,
    *,
    quantize: str = "int8",
    max_tokens: int | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """Copy the hf artifact `source` to `out` with the new load-time settings; returns the manifest."""
    src, dst = Path(source), Path(out)
    manifest = read_manifest(src)
    if manifest.get("backbone") != "hf":
        raise PredictorLoadError(
            f"{src}: optimize applies to encoder (hf) predictors, this one is {manifest.get('backbone')!r} "
            "(the fast ranker already scores in about a millisecond)"
        )
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    if dst.resolve() == src.resolve():
        raise ValueError("--out must differ from the source artifact (versions are immutable)")
    if dst.exists():
        raise ValueError(f"{dst} already exists")
    shutil.copytree(src, dst)
    fields = {k: v for k, v in manifest.items() if k not in ("files", "format", "created")}
    config = dict(fields["config"])
    config["quantize"] = quantize
    if max_tokens is not None:
        if max_tokens < 8:
            raise ValueError("max_tokens must be >= 8")
        config["max_tokens"] = max_tokens
        fields["max_input"] = max_tokens
    fields["config"] = config
    fields["version"] = version or f"{manifest['version']}-{quantize}" + (
        f"-{max_tokens}" if max_tokens else ""
    )
    fields["parent"] = manifest["version"]
    fields["optimized_from"] = {
        "version": manifest["version"],
        "quantize": quantize,
        "max_tokens": max_tokens,
    }
    return write_manifest(dst, fields, manifest["files"])


def compare(source: str | Path, derived: str | Path, examples: Sequence[Example]) -> dict[str, Any]:
    """τ and CPU latency of the source and the derived artifact on the same examples (same process,
    interleaved: machines are noisy), with the τ change."""
    before = evaluate(load_predictor(source), examples)
    after = evaluate(load_predictor(derived), examples)
    return {
        "before": before,
        "after": after,
        "kendall_tau_change": round(after["kendall_tau"] - before["kendall_tau"], 4),
        "single_p50_speedup": round(before["score_ms_p50"] / after["score_ms_p50"], 2),
        "batched_speedup": round(before["batch_ms_per_request"] / after["batch_ms_per_request"], 2),
    }
