"""Benchmark reports: the JSON document (contract), a markdown table, matplotlib PNG plots.

JSON shape: `{"policies": {NAME: {metric: value, ...}}, "config": {...}}`, plus `"sweep":
[{"rate": r, "policies": {...}}, ...]` for rate sweeps (then `policies` is the highest rate's).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ltr_sidecar.bench.metrics import RequestResult

TABLE_COLUMNS: tuple[tuple[str, str, float], ...] = (
    # (metric key, header, display multiplier)
    ("mean_per_token_latency_s", "mean ms/token", 1e3),
    ("p50_per_token_latency_s", "p50 ms/token", 1e3),
    ("p90_per_token_latency_s", "p90 ms/token", 1e3),
    ("p99_per_token_latency_s", "p99 ms/token", 1e3),
    ("mean_ttft_s", "mean TTFT s", 1.0),
    ("max_waiting_time_s", "max wait s", 1.0),
    ("throughput_tok_s", "tok/s", 1.0),
    ("ratio_to_fcfs", "÷ FCFS", 1.0),
    ("ratio_to_oracle", "÷ oracle", 1.0),
    ("ratio_to_srtf", "÷ srtf", 1.0),
    ("preemptions", "preemptions", 1.0),
    ("recompute_overhead", "recomputed ÷ output tokens", 1.0),
)
COUNT_COLUMNS = frozenset({"preemptions"})


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def markdown_table(policies: Mapping[str, Mapping[str, float]]) -> str:
    """A markdown table, one row per policy (columns present in any policy's metrics)."""
    cols = [c for c in TABLE_COLUMNS if any(c[0] in m for m in policies.values())]
    lines = ["| policy | " + " | ".join(h for _, h, _ in cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, metrics in policies.items():
        cells = [
            (
                "–"
                if k not in metrics
                else f"{metrics[k]:.0f}"
                if k in COUNT_COLUMNS
                else _fmt(metrics[k] * mul)
            )
            for k, _, mul in cols
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_table(sweep: Sequence[Mapping[str, Any]], key: str = "mean_per_token_latency_s") -> str:
    """Markdown: one row per rate, mean per-token latency (ms) per policy and LTR ÷ FCFS."""
    names = list(dict.fromkeys(n for row in sweep for n in row["policies"]))
    header = "| rate (req/s) | " + " | ".join(f"{n} ms/token" for n in names)
    has_ratio = "ltr" in names and "fcfs" in names
    header += " | ltr ÷ fcfs |" if has_ratio else " |"
    lines = [header, "|---:|" + "---:|" * (len(names) + int(has_ratio))]
    for row in sweep:
        pol = row["policies"]
        cells = [_fmt(pol[n][key] * 1e3) if n in pol else "–" for n in names]
        if has_ratio:
            cells.append(f"{pol['ltr'][key] / pol['fcfs'][key]:.3f}")
        lines.append(f"| {row['rate']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(
    path: str | Path,
    policies: Mapping[str, Mapping[str, float]],
    config: Mapping[str, Any],
    sweep: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Write the benchmark JSON document; returns the path."""
    doc: dict[str, Any] = {"policies": policies, "config": config}
    if sweep is not None:
        doc["sweep"] = list(sweep)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return out


def write_result_files(out_dir: str | Path, name: str, result: Mapping[str, Any], markdown: str) -> Path:
    """`<out_dir>/<name>.json` and `<name>.md` of a benchmark that is not a policy run; returns out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    (out / f"{name}.md").write_text(markdown, encoding="utf-8")
    return out


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _style(k: int) -> str:
    """Line style of the k-th policy: solid for the first ten (matplotlib's colour cycle), then dashed."""
    return "-" if k < 10 else "--"


def plot_cdf(results: Mapping[str, Sequence[RequestResult]], path: str | Path, title: str = "") -> Path:
    """PNG: CDF of per-token latency, one line per policy (log x axis)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for k, (name, res) in enumerate(results.items()):
        xs = sorted(r.per_token_latency_s for r in res if r.ok)
        if xs:
            ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=name, linestyle=_style(k))
    ax.set_xscale("log")
    ax.set_xlabel("per-token latency (s), log scale")
    ax.set_ylabel("fraction of requests")
    ax.set_title(title or "Per-token latency CDF")
    return _finish(plt, fig, ax, path)


def _finish(plt: Any, fig: Any, ax: Any, path: str | Path) -> Path:
    """Grid, legend, layout; save the PNG (creating its folder) and close the figure."""
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_sweep(
    sweep: Sequence[Mapping[str, Any]],
    path: str | Path,
    title: str = "",
    key: str = "mean_per_token_latency_s",
) -> Path:
    """PNG: mean per-token latency vs arrival rate, one line per policy (log y axis)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    names = list(dict.fromkeys(n for row in sweep for n in row["policies"]))
    for k, name in enumerate(names):
        pts = [(row["rate"], row["policies"][name][key]) for row in sweep if name in row["policies"]]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, linestyle=_style(k))
    ax.set_yscale("log")
    ax.set_xlabel("arrival rate (requests/s)")
    ax.set_ylabel("mean per-token latency (s), log scale")
    ax.set_title(title or "Latency vs arrival rate")
    return _finish(plt, fig, ax, path)
