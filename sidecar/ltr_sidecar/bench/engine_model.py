"""Step-time model of a continuous-batching LLM engine (vLLM-like), for the simulator.

One engine step runs every running sequence's decode token plus the prefill of newly admitted
prompts. Its duration is

    step = overhead + n_layers × linear_layer_ms(batch tokens)          (Vidur measurements)
         + KV bytes read by decode attention ÷ (HBM bandwidth × efficiency)            (roofline)
         + causal prefill attention FLOPs ÷ (peak FLOPs × efficiency)                   (roofline)
         + LM head: max(weight bytes ÷ bandwidth, FLOPs ÷ peak)                         (roofline)

`linear_layer_ms` is the per-layer time of everything but attention (layernorms, QKV/out
projections, RoPE, gated MLP, residual add) vs the number of tokens in the batch, median of the
Vidur profiler's measurements (microsoft/vidur `data/profiling/compute`, MIT licence; Agrawal et
al., "Vidur: A Large-Scale Simulation Framework for LLM Inference", MLSys 2024), tensor parallel 1:
- A100-80GB, Meta-Llama-3-8B: measured directly.
- H100-80GB: Vidur ships Llama-2-7B only; scaled by the per-layer weight ratio of Llama-3-8B to
  Llama-2-7B (218 M / 202 M = 1.08).
Vidur's attention-kernel timings are not available offline, hence the roofline for attention.
Hardware figures are the vendors' datasheets (A100 SXM 80GB: 2.04 TB/s, 312 dense bf16 TFLOPs;
H100 SXM: 3.35 TB/s, 989 TFLOPs). KV capacity follows vLLM's default gpu_memory_utilization=0.9
minus weights and ~3 GB activations; max_num_seqs=256 and max_num_batched_tokens=8192 are vLLM's
defaults for online serving on these GPUs.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

# (tokens in batch, ms per transformer layer without attention)
A100_LLAMA3_8B_LINEAR_MS: tuple[tuple[int, float], ...] = (
    (1, 0.303),
    (8, 0.312),
    (16, 0.3165),
    (32, 0.341),
    (64, 0.351),
    (96, 0.394),
    (128, 0.412),
    (192, 0.524),
    (256, 0.609),
    (384, 0.867),
    (512, 1.0825),
    (768, 1.6545),
    (1024, 2.348),
    (1536, 3.341),
    (2048, 4.49),
    (3072, 6.4115),
    (4096, 8.539),
    (6144, 12.979),
    (8192, 16.9965),
    (16384, 34.123),
)
H100_LLAMA2_7B_LINEAR_MS: tuple[tuple[int, float], ...] = (
    (1, 0.175),
    (8, 0.172),
    (16, 0.181),
    (32, 0.181),
    (64, 0.183),
    (96, 0.228),
    (128, 0.199),
    (192, 0.2315),
    (256, 0.286),
    (384, 0.345),
    (512, 0.3745),
    (768, 0.588),
    (1024, 0.657),
    (1536, 1.043),
    (2048, 1.2632),
    (3072, 1.999),
    (4096, 2.6002),
)
LLAMA3_8B_OVER_LLAMA2_7B_LAYER_WEIGHTS = 218.1 / 201.3


@dataclass(frozen=True)
class EngineProfile:
    """Hardware + model figures that determine step time and capacity."""

    name: str
    linear_ms: tuple[tuple[int, float], ...]
    n_layers: int = 32
    n_heads: int = 32
    head_dim: int = 128
    hidden: int = 4096
    vocab: int = 128256
    kv_bytes_per_token: int = 2 * 32 * 8 * 128 * 2  # K and V × layers × kv heads × head dim × bf16
    mem_bandwidth_bytes_s: float = 2.039e12
    peak_flops: float = 312e12
    bandwidth_efficiency: float = 0.8
    flops_efficiency: float = 0.5
    step_overhead_s: float = 0.002  # scheduling, sampling, detokenisation (CPU side of a step)
    kv_capacity_tokens: int = 440_000
    max_num_seqs: int = 256
    max_batched_tokens: int = 8192

    def linear_layer_s(self, tokens: int) -> float:
        """Per-layer non-attention time for a batch of `tokens` tokens (piecewise linear)."""
        xs = [x for x, _ in self.linear_ms]
        ys = [y for _, y in self.linear_ms]
        if tokens <= xs[0]:
            return ys[0] / 1e3
        i = bisect.bisect_left(xs, tokens)
        if i >= len(xs):  # extrapolate with the last segment's slope
            i = len(xs) - 1
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return (y0 + (y1 - y0) * (tokens - x0) / (x1 - x0)) / 1e3

    def step_time_s(
        self,
        decode_seqs: int,
        decode_context_tokens: int,
        prefill_lengths: list[int] | tuple[int, ...] = (),
        prefill_cached: list[int] | tuple[int, ...] = (),
    ) -> float:
        """Duration of one step: `decode_seqs` decoding with this many KV tokens, plus prefills of
        `prefill_lengths` new tokens each, after `prefill_cached` tokens reused from the prefix cache."""
        prefill_tokens = sum(prefill_lengths)
        tokens = decode_seqs + prefill_tokens
        if tokens <= 0:
            return 0.0
        bw = self.mem_bandwidth_bytes_s * self.bandwidth_efficiency
        flops = self.peak_flops * self.flops_efficiency
        linear = self.n_layers * self.linear_layer_s(tokens)
        decode_attn = decode_context_tokens * self.kv_bytes_per_token / bw
        cached = list(prefill_cached) + [0] * (len(prefill_lengths) - len(prefill_cached))
        # causal attention of n new queries over c cached + n new keys: QK^T and AV, 2 FLOPs a MAC
        attn_flops = sum(2.0 * n * (n + 2 * c) for n, c in zip(prefill_lengths, cached, strict=True)) * (
            self.n_heads * self.head_dim * self.n_layers
        )
        seqs = decode_seqs + len(prefill_lengths)
        lm_head = max(self.vocab * self.hidden * 2 / bw, 2.0 * seqs * self.hidden * self.vocab / flops)
        return self.step_overhead_s + linear + decode_attn + attn_flops / flops + lm_head


PROFILES: dict[str, EngineProfile] = {
    "a100-llama3-8b": EngineProfile("a100-llama3-8b", A100_LLAMA3_8B_LINEAR_MS),
    "h100-llama3-8b": EngineProfile(
        "h100-llama3-8b",
        tuple((n, ms * LLAMA3_8B_OVER_LLAMA2_7B_LAYER_WEIGHTS) for n, ms in H100_LLAMA2_7B_LINEAR_MS),
        mem_bandwidth_bytes_s=3.35e12,
        peak_flops=989e12,
    ),
}


def get_profile(name: str) -> EngineProfile:
    """The engine profile called `name`; ValueError lists the valid names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown engine profile {name!r}; expected one of {sorted(PROFILES)}") from None
