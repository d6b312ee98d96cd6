"""`ltr bench learning-curve`: how well each predictor family ranks a workload it has never seen, and
how fast it learns it from that workload's completions.

For every workload in the shared data folder (each treated as unseen): a fixed held-out slice (the
first `--heldout` prompts in SHA-256 order), a **cold start** trained only on the *other* shippable
workloads (MIT/Apache licensed: leave-one-dataset-out, ListMLE lists within one source), then τ on the
held-out slice after retraining on the first N of the workload's remaining completions, for each N
in `--sizes`, with the CPU wall time of each retrain. `warm` fine-tunes the cold start, `scratch`
trains a fresh model; family `auto` is what `ltr predictor retrain --backbone auto` does from the cold
start (its starts compete within `--time-budget`; the point records the winner). Writes
`<out>/<name>.{json,md,png}`.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import platform
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ltr_sidecar.bench.predictor_bench import default_data_root
from ltr_sidecar.bench.report import write_result_files
from ltr_sidecar.data.datasets import Example, load_examples
from ltr_sidecar.predictor.runtime.base import Predictor, PromptLengthPredictor
from ltr_sidecar.predictor.runtime.neural import NeuralPredictor
from ltr_sidecar.predictor.runtime.registry import bundled_predictor_path, load_predictor
from ltr_sidecar.stats import kendall_tau_b, percentile

if TYPE_CHECKING:
    from ltr_sidecar.predictor.training.pipeline import TrainSpec


@dataclass(frozen=True)
class Workload:
    """One dataset of the shared folder, seen as a workload (`model` picks one model's answers)."""

    name: str
    path: str
    model: str | None = None
    shippable: bool = False  # licence lets a shipped predictor train on it (MIT / Apache / CC-BY)
    note: str = ""


WORKLOADS: tuple[Workload, ...] = (
    Workload("alpaca-eval", "alpaca-eval", "Meta-Llama-3-8B-Instruct", note="CC BY-NC: evaluation only"),
    Workload("arena-hard", "arena-hard-v2.0", "llama3.1-8b-instruct", shippable=True, note="Apache-2.0"),
    Workload("gpteacher", "gpteacher-gpt4", None, shippable=True, note="MIT"),
    Workload("hh-rlhf", "hh-rlhf-harmless-base-test", None, shippable=True, note="MIT"),
    Workload("code-alpaca", "code-alpaca-2k", None, note="CC BY-NC: evaluation only"),
    Workload(
        "self-instruct",
        "self-instruct-user-oriented-252",
        "text-davinci-003",
        note="Apache-2.0, authors ask not to train on it: evaluation only",
    ),
)
# what the shipped sample (and so the bundled predictor) was drawn from
BUNDLED_SEEN = frozenset({"arena-hard", "gpteacher", "hh-rlhf"})


def _log(msg: str) -> None:
    print(f"[bench learning-curve {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def hash_order(examples: Sequence[Example]) -> list[Example]:
    """One example per distinct prompt, ordered by the SHA-256 of the prompt (deterministic)."""
    seen: dict[str, Example] = {}
    for e in examples:
        seen.setdefault(e.prompt, e)
    return sorted(seen.values(), key=lambda e: hashlib.sha256(e.prompt.encode()).hexdigest())


def tau_with_ci(
    pred: Predictor, examples: Sequence[Example], resamples: int = 300, seed: int = 0
) -> dict[str, float]:
    """Kendall τ-b of scores vs shortness on `examples`, with a 95% percentile-bootstrap interval."""
    scores = pred.score([e.prompt for e in examples])
    short = [-e.length for e in examples]
    tau = kendall_tau_b(scores, short)
    rng = random.Random(seed)
    n = len(examples)
    boot = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        boot.append(kendall_tau_b([scores[i] for i in idx], [short[i] for i in idx]))
    return {"tau": tau, "lo": percentile(boot, 2.5), "hi": percentile(boot, 97.5), "n_eval": n}


class Curve:
    """Data and options of one run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(args.data_root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"shared data folder {self.root} not found (set --data-root)")
        self.data: dict[str, list[Example]] = {}
        self._cold: dict[frozenset[str], tuple[NeuralPredictor, float]] = {}

    def examples(self, w: Workload) -> list[Example]:
        if w.name not in self.data:
            ex = hash_order(load_examples(self.root / w.path, w.model))
            self.data[w.name] = ex[: self.args.max_per_workload]
        return self.data[w.name]

    def spec(self, backbone: str, version: str) -> TrainSpec:
        from ltr_sidecar.predictor.training.pipeline import TrainSpec

        train: dict[str, Any] = {"progress": False, "seed": self.args.seed}
        if self.args.time_budget:
            train["time_budget"] = self.args.time_budget
        return TrainSpec(backbone=backbone, version=version, device="cpu", train=train)

    def cold_start(self, target: str) -> tuple[NeuralPredictor, float]:
        """The fast ranker trained on every shippable workload except `target` (cached by set)."""
        from ltr_sidecar.predictor.training.pipeline import train_predictor

        members = frozenset(w.name for w in WORKLOADS if w.shippable and w.name != target)
        if members not in self._cold:
            cap = self.args.cold_per_workload
            train = [e for w in WORKLOADS if w.name in members for e in self.examples(w)[-cap:]]
            _log(f"cold start without {target}: fast ranker on {len(train)} examples of {sorted(members)}")
            spec = self.spec("fast", f"cold-no-{target}")
            spec.train.pop("time_budget", None)
            t0 = time.perf_counter()
            pred, res = train_predictor(train, spec)
            self._cold[members] = (pred, time.perf_counter() - t0)
            _log(f"  val tau {res.best_val_tau}, {self._cold[members][1]:.1f} s")
        return self._cold[members]

    def retrain(
        self, family: str, mode: str, base: NeuralPredictor | None, train: Sequence[Example], tag: str
    ) -> tuple[Predictor, float, bool, str]:
        """One retrain: (predictor, CPU seconds, time budget hit, the start that won)."""
        from ltr_sidecar.predictor.training.pipeline import train_predictor

        if family == "auto":
            return self.retrain_auto(base, train, tag)
        backbone = family.removesuffix("-classify")
        spec = self.spec(backbone, tag)
        if family.endswith("-classify"):  # the S3-like baseline: length classes, cross-entropy
            spec.objective = "classify"
        start = copy.deepcopy(base) if (mode == "warm" and base is not None) else None
        t0 = time.perf_counter()
        pred, res = train_predictor(train, spec, base=start, desc=tag)
        return pred, time.perf_counter() - t0, res.budget_exhausted, mode

    def retrain_auto(
        self, base: NeuralPredictor | None, train: Sequence[Example], tag: str
    ) -> tuple[Predictor, float, bool, str]:
        from ltr_sidecar.predictor.ops.starts import default_encoder, plan_starts, run_starts

        spec = self.spec("fast", tag)
        budget = spec.train.pop("time_budget", None)
        start = copy.deepcopy(base) if base is not None else None
        t0 = time.perf_counter()
        starts, skipped = plan_starts(
            spec, start, "auto", n_train=len(train), budget=budget, encoder=default_encoder()
        )
        out = run_starts(starts, train, budget, lambda m: _log(f"  {m}"), skipped)
        return out.candidate, time.perf_counter() - t0, out.fit.budget_exhausted, out.chosen


def run_workload(curve: Curve, w: Workload) -> dict[str, Any]:
    args = curve.args
    ex = curve.examples(w)
    n_held = min(args.heldout, len(ex) // 2)
    held, pool = ex[:n_held], ex[n_held:]
    row: dict[str, Any] = {"workload": asdict(w), "heldout": len(held), "pool": len(pool), "points": []}
    _log(f"{w.name}: {len(ex)} prompts, held-out {len(held)}, pool {len(pool)}")
    row["prompt_length"] = tau_with_ci(PromptLengthPredictor(), held)
    row["bundled"] = {
        **tau_with_ci(load_predictor(bundled_predictor_path()), held),
        "seen": w.name in BUNDLED_SEEN,
    }
    cold, cold_s = curve.cold_start(w.name)
    row["cold_start"] = {**tau_with_ci(cold, held), "train_s": cold_s}
    _log(f"  cold start tau {row['cold_start']['tau']:.3f}, bundled {row['bundled']['tau']:.3f}")
    for family in args.families:
        modes = {"fast": ("warm", "scratch"), "auto": ("retrain",)}.get(family, ("scratch",))
        for mode in modes:
            for n in args.sizes:
                if n == 0 or n > len(pool):
                    continue
                tag = f"{w.name}-{family}-{mode}-{n}"
                pred, seconds, out_of_time, won = curve.retrain(family, mode, cold, pool[:n], tag)
                point = {
                    "family": family,
                    "mode": mode,
                    "n": n,
                    "seconds": seconds,
                    "budget_hit": out_of_time,
                    "start": won,
                }
                point.update(tau_with_ci(pred, held))
                row["points"].append(point)
                _log(f"  {family}/{mode} N={n}: tau {point['tau']:.3f} in {seconds:.1f} s")
    return row


def render_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Learning curves ({result['meta']['device']})",
        "",
        "Kendall τ-b on a fixed held-out slice of each workload (95% bootstrap interval; n = held-out "
        "prompts). *cold start*: fast ranker trained only on the other shippable workloads "
        "(leave-one-dataset-out). *bundled*: the shipped artifact (marked *seen* where the shipped sample "
        "holds that dataset). `warm` fine-tunes the cold start on N completions of the workload, `scratch` "
        "trains fresh; seconds are CPU wall time of that retrain.",
        "",
        "| workload | n | prompt-length | bundled | cold start (LODO) |",
        "|---|---:|---|---|---|",
    ]

    def f(p: dict[str, Any]) -> str:
        return f"{p['tau']:.3f} [{p['lo']:.2f}, {p['hi']:.2f}]"

    for r in result["workloads"]:
        seen = " (seen)" if r["bundled"]["seen"] else ""
        lines.append(
            f"| {r['workload']['name']} | {r['heldout']} | {f(r['prompt_length'])} | {f(r['bundled'])}{seen} "
            f"| {f(r['cold_start'])} |"
        )
    sizes = result["meta"]["sizes"]
    lines += ["", "| workload | family/mode | " + " | ".join(f"N={n}" for n in sizes) + " |"]
    lines.append("|---|---|" + "---|" * len(sizes))
    for r in result["workloads"]:
        combos = sorted({(p["family"], p["mode"]) for p in r["points"]})
        for fam, mode in combos:
            cells = []
            for n in sizes:
                if n == 0:
                    cells.append(f(r["cold_start"]) if mode == "warm" else "–")
                    continue
                p = next((p for p in r["points"] if (p["family"], p["mode"], p["n"]) == (fam, mode, n)), None)
                budget = "*" if p and p["budget_hit"] else ""
                won = f", {p['start']}" if p and fam == "auto" else ""
                cells.append(f"{f(p)} ({p['seconds']:.0f} s{budget}{won})" if p else "–")
            lines.append(f"| {r['workload']['name']} | {fam}/{mode} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "`*`: the retrain hit its time budget; `auto` cells name the start that won.",
        "",
        f"Run: `{result['meta']['command']}`",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["workloads"]
    cols = min(3, len(rows))
    fig, axes = plt.subplots(
        (len(rows) + cols - 1) // cols,
        cols,
        figsize=(4.2 * cols, 3.3 * ((len(rows) + cols - 1) // cols)),
        squeeze=False,
    )
    for ax, r in zip(axes.flat, rows, strict=False):
        for fam, mode in sorted({(p["family"], p["mode"]) for p in r["points"]}):
            pts = sorted(
                (p for p in r["points"] if (p["family"], p["mode"]) == (fam, mode)), key=lambda p: p["n"]
            )
            if mode == "warm":
                pts = [{"n": 0, **r["cold_start"]}, *pts]
            xs = [max(p["n"], 10) for p in pts]
            ax.errorbar(
                xs,
                [p["tau"] for p in pts],
                yerr=[[p["tau"] - p["lo"] for p in pts], [p["hi"] - p["tau"] for p in pts]],
                marker="o",
                capsize=2,
                label=f"{fam}/{mode}",
            )
        ax.axhline(r["prompt_length"]["tau"], color="grey", ls=":", label="prompt-length")
        ax.set_xscale("log")
        ax.set_title(f"{r['workload']['name']} (held-out n={r['heldout']})", fontsize=9)
        ax.set_xlabel("completions retrained on (N; 10 = cold start)")
        ax.set_ylabel("Kendall τ-b")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(rows) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ltr bench learning-curve", description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=default_data_root(), help="shared data folder")
    p.add_argument("--out", default="benchmarks/results", help="output folder")
    p.add_argument("--name", default="learning-curve", help="result file base name")
    p.add_argument("--workloads", default=",".join(w.name for w in WORKLOADS), help="comma list")
    p.add_argument(
        "--families",
        default="fast",
        help="comma list: fast, fast-classify, minilm, minilm-classify, a model dir, auto (the retrain job)",
    )
    p.add_argument("--sizes", default="0,100,200,500,1000,2000", help="retrain sizes N")
    p.add_argument("--heldout", type=int, default=200, help="held-out prompts per workload")
    p.add_argument("--max-per-workload", type=int, default=4000, help="cap on prompts per workload")
    p.add_argument("--cold-per-workload", type=int, default=1500, help="cold-start examples per workload")
    p.add_argument("--time-budget", type=float, default=0.0, help="seconds per retrain (0: none)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    args.families = [f for f in args.families.split(",") if f]
    args.sizes = sorted({int(s) for s in args.sizes.split(",") if s})
    chosen = [w for w in WORKLOADS if w.name in set(args.workloads.split(","))]
    if not chosen:
        print(f"ltr bench learning-curve: error: no known workload in {args.workloads!r}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        curve = Curve(args)
        rows = [run_workload(curve, w) for w in chosen]
    except (FileNotFoundError, ValueError) as exc:
        print(f"ltr bench learning-curve: error: {exc}", file=sys.stderr)
        return 1
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "sizes": args.sizes,
        "command": "ltr bench learning-curve " + " ".join(sys.argv[1:] if argv is None else argv),
        **{k: v for k, v in vars(args).items() if k not in ("sizes",)},
    }
    result = {"meta": meta, "workloads": rows}
    md = render_markdown(result)
    out = write_result_files(args.out, args.name, result, md)
    plot(result, out / f"{args.name}.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
