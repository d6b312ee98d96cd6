"""Summary of a preemption study: ratios to `srtf`, the gain of preemption, the step-3 decision.

Input: benchmark JSON documents (`ltr bench --engine sim --json`, one per configuration, e.g.
arrivals × prefix caching) with `ltr`, `srtf` and preemptive LTR policies in their sweeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

KEY = "mean_per_token_latency_s"
DECISION_GAIN = 0.15  # issue 15: build sidecar preemption only if >= 15% lower than ltr ...
DECISION_MIN_RATE = 32.0  # ... at >= 32 req/s
LEARNED = ("ltr-preempt", "ltr-rerank", "ltr-rerank-minus", "ltr-preempt-paper")


def gain(policies: Mapping[str, Mapping[str, float]], name: str, base: str = "ltr") -> float | None:
    """1 - name/base in mean per-token latency (positive: `name` is faster)."""
    if name not in policies or base not in policies:
        return None
    return 1.0 - policies[name][KEY] / policies[base][KEY]


def summary_rows(docs: Mapping[str, Mapping[str, Any]], rates: Sequence[float]) -> list[dict[str, Any]]:
    """One row per (configuration, rate): ratios to srtf, gains over ltr, waits, preemption costs."""
    rows = []
    for config, doc in docs.items():
        for row in doc["sweep"]:
            if row["rate"] not in rates:
                continue
            pol = row["policies"]
            out: dict[str, Any] = {"config": config, "rate": row["rate"]}
            for name in ("ltr", "oracle", *LEARNED):
                if name in pol and "srtf" in pol:
                    out[f"{name}/srtf"] = pol[name][KEY] / pol["srtf"][KEY]
            for name in LEARNED:
                g = gain(pol, name)
                if g is not None:
                    out[f"gain {name}"] = g
            g = gain(pol, "ltr-preempt-starve", "ltr-starve")
            if g is not None:
                out["gain ltr-preempt-starve vs ltr-starve"] = g
            for name in ("fcfs", "ltr-starve", "ltr-preempt", "ltr-preempt-starve", "ltr-rerank-starve"):
                if name in pol:
                    out[f"max wait {name} s"] = pol[name]["max_waiting_time_s"]
            for name in ("srtf", "ltr-preempt", "ltr-rerank"):
                if name in pol:
                    out[f"preemptions {name}"] = pol[name]["preemptions"]
                    out[f"recomputed/output {name}"] = pol[name]["recompute_overhead"]
            rows.append(out)
    return rows


def decision(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The step-3 rule on `ltr-preempt` vs `ltr` at >= 32 req/s, and the best of any learned variant."""
    high = [r for r in rows if r["rate"] >= DECISION_MIN_RATE]
    paper = [(r["gain ltr-preempt"], r["config"], r["rate"]) for r in high if "gain ltr-preempt" in r]
    best = [(r[f"gain {n}"], n, r["config"], r["rate"]) for r in high for n in LEARNED if f"gain {n}" in r]
    if not paper:
        raise ValueError("no ltr-preempt vs ltr comparison at >= 32 req/s")
    top = max(paper)
    top_any = max(best)
    return {
        "rule": f"build sidecar preemption only if ltr-preempt is >= {DECISION_GAIN:.0%} lower mean "
        f"per-token latency than ltr at >= {DECISION_MIN_RATE:g} req/s",
        "best_gain_ltr_preempt": top[0],
        "at": {"config": top[1], "rate": top[2]},
        "best_gain_any_learned": top_any[0],
        "best_learned": {"policy": top_any[1], "config": top_any[2], "rate": top_any[3]},
        "build_step_3": top[0] >= DECISION_GAIN,
    }


def _cell(column: str, value: Any) -> str:
    if not isinstance(value, float):
        return str(value)
    if column.startswith("gain"):
        return f"{value:+.1%}"
    if column == "rate":
        return f"{value:g}"
    if column.startswith("preemptions"):
        return f"{value:.0f}"
    if column.startswith("max wait"):
        return f"{value:.1f}"
    return f"{value:.3f}"


def summary_markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A markdown table of `rows` restricted to `columns` (gains as signed percentages)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(c, r.get(c, "–")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
