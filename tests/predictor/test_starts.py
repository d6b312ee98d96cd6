"""Backbone by budget: which starts a retrain tries (`plan_starts`), how they share the time budget and
which one wins (`run_starts`), end to end through `ltr predictor retrain --backbone auto`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ltr_sidecar.predictor.ops import starts as st
from ltr_sidecar.predictor.runtime.neural import NeuralPredictor
from ltr_sidecar.predictor.runtime.store import PredictorStore
from ltr_sidecar.predictor.training.pipeline import TrainSpec, build_predictor, train_predictor
from ltr_sidecar.predictor.training.train import TrainResult
from tests.support.predictor import FAST_SMALL, synthetic_examples, write_traces

FAST = TrainSpec(
    backbone="fast", fast_options=FAST_SMALL, device="cpu", train={"progress": False, "lr": 0.01}
)


def _fast_base() -> NeuralPredictor:
    return build_predictor(FAST, out_dim=1)


def _names(starts: list[st.Start]) -> list[str]:
    return [s.name for s in starts]


def test_auto_tries_the_current_version_a_fresh_fast_ranker_and_an_encoder_when_the_budget_allows(
    tiny_bert_dir: Path,
) -> None:
    base = _fast_base()
    starts, skipped = st.plan_starts(
        FAST, base, "auto", n_train=st.MIN_ENCODER_SAMPLES, budget=300.0, encoder=str(tiny_bert_dir)
    )
    assert _names(starts) == ["fine-tuned", "fresh", "encoder"] and skipped == []
    warm, fresh, encoder = starts
    assert (
        warm.base is base
        and fresh.base is None
        and fresh.spec.fast_options["buckets"] == FAST_SMALL["buckets"]
    )
    # the encoder is trained as it will serve on CPU, with its own hyper-parameters (not the fast --lr)
    assert (
        encoder.kind == "hf"
        and encoder.spec.quantize == "int8"
        and encoder.spec.max_input == st.ENCODER_MAX_INPUT
    )
    assert "lr" not in encoder.spec.train and encoder.spec.train["progress"] is False


@pytest.mark.parametrize(
    ("n_train", "budget", "encoder", "reason"),
    [
        (st.MIN_ENCODER_SAMPLES - 1, 300.0, "minilm", "fewer than"),
        (2000, None, "minilm", "no time budget"),
        (2000, 300.0, None, "no encoder installed"),
    ],
)
def test_auto_leaves_the_encoder_out_with_the_reason(n_train, budget, encoder, reason) -> None:
    starts, skipped = st.plan_starts(
        FAST, _fast_base(), "auto", n_train=n_train, budget=budget, encoder=encoder
    )
    assert _names(starts) == ["fine-tuned", "fresh"]
    assert len(skipped) == 1 and skipped[0]["start"] == "encoder" and reason in skipped[0]["reason"]


def test_an_explicit_backbone_fine_tunes_the_current_version_only_when_it_is_one(tiny_bert_dir: Path) -> None:
    fast_base = _fast_base()
    assert _names(st.plan_starts(FAST, fast_base, "fast", n_train=900, budget=60.0, encoder=None)[0]) == [
        "fine-tuned"
    ]
    hf_spec = TrainSpec(backbone=str(tiny_bert_dir), device="cpu", train={"progress": False})
    (fresh,) = st.plan_starts(hf_spec, fast_base, str(tiny_bert_dir), n_train=900, budget=60.0, encoder=None)[
        0
    ]
    assert fresh.name == "fresh" and fresh.kind == "hf" and fresh.base is None  # not the fast base
    hf_base = build_predictor(hf_spec, out_dim=1)
    (warm,) = st.plan_starts(hf_spec, hf_base, str(tiny_bert_dir), n_train=900, budget=60.0, encoder=None)[0]
    assert warm.name == "fine-tuned" and warm.base is hf_base
    # an encoder current version under auto: a fresh fast ranker first (seconds), then the encoder warm
    starts, skipped = st.plan_starts(hf_spec, hf_base, "auto", n_train=900, budget=60.0, encoder="minilm")
    assert [(s.name, s.kind) for s in starts] == [("fresh", "fast"), ("fine-tuned", "hf")] and skipped == []
    assert (
        st.plan_starts(FAST, None, "auto", n_train=900, budget=60.0, encoder="minilm")[0][0].name == "fresh"
    )


def test_the_encoder_is_left_out_when_the_measured_epoch_does_not_fit(
    monkeypatch, tiny_bert_dir: Path
) -> None:
    examples = synthetic_examples(st.MIN_ENCODER_SAMPLES + 100, seed=3)
    starts, _ = st.plan_starts(
        FAST, _fast_base(), "auto", n_train=len(examples), budget=20.0, encoder=str(tiny_bert_dir)
    )
    monkeypatch.setattr(st, "probe_epoch_seconds", lambda *a: 15.0)  # an epoch "takes" 15 s of the 20
    lines: list[str] = []
    outcome = st.run_starts(starts, examples, 20.0, lines.append)
    assert [t["start"] for t in outcome.tried] == ["fine-tuned", "fresh"]
    assert outcome.skipped == [{"start": "encoder", "reason": outcome.skipped[0]["reason"]}]
    assert "an epoch takes ~15s" in outcome.skipped[0]["reason"] and any("left out" in m for m in lines)


def test_probe_measures_a_positive_epoch_time(tiny_bert_dir: Path) -> None:
    spec = st.encoder_spec(FAST, str(tiny_bert_dir))
    prompts = [e.prompt for e in synthetic_examples(64)]
    small, large = (st.probe_epoch_seconds(spec, prompts, n, n // 10) for n in (100, 1000))
    assert 0 < small < large  # proportional to the number of lists


def test_the_best_validation_tau_wins(monkeypatch) -> None:
    taus = iter([0.2, None, 0.5])

    def fake_train(examples, spec, base=None, desc="", length_unit=""):  # the selection rule only
        pred = build_predictor(FAST, out_dim=1)
        return pred, TrainResult(best_val_tau=next(taus), best_epoch=0, epochs_run=1, seconds=0.0)

    monkeypatch.setattr(st, "train_predictor", fake_train)
    starts = [st.Start(name, FAST) for name in ("fine-tuned", "fresh", "other")]
    outcome = st.run_starts(starts, synthetic_examples(20), None, lambda m: None)
    assert outcome.chosen == "other" and outcome.summary()["fresh_val_tau"] is None
    assert outcome.summary()["fine_tuned_val_tau"] == 0.2


@pytest.mark.slow
def test_retrain_auto_lets_an_encoder_compete_within_the_budget(
    capsys, tmp_path: Path, tiny_bert_dir: Path
) -> None:
    from ltr.cli import main as ltr_main

    store = PredictorStore(tmp_path / "store")
    base, _ = train_predictor(synthetic_examples(200, seed=5), FAST)
    base.version = "v1"
    base.save(tmp_path / "v1")
    store.publish(tmp_path / "v1", "v1")
    traces = write_traces(tmp_path / "t", 800)
    budget = 40.0
    argv = ["predictor", "retrain", "--traces", str(traces), "--store", str(store.root), "--window", "0"]
    argv += [
        "--min-samples",
        "100",
        "--encoder",
        str(tiny_bert_dir),
        "--time-budget",
        f"{budget:.0f}s",
        "--quiet",
    ]
    t0 = time.perf_counter()
    code = ltr_main(argv)
    elapsed = time.perf_counter() - t0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert code in (0, 4), err
    start = result["start"]
    assert [t["start"] for t in start["tried"]] == ["fine-tuned", "fresh", "encoder"], start
    assert start["chosen"] in ("fine-tuned", "fresh", "encoder") and start["encoder_val_tau"] is not None
    assert sum(t["seconds"] for t in start["tried"]) <= budget and elapsed < budget + 30
    if code == 0 and start["chosen"] == "encoder":  # published as it will serve: int8, short inputs, fresh
        manifest = json.loads((store.resolve(result["candidate"]) / "predictor.json").read_text())
        assert manifest["config"]["quantize"] == "int8" and manifest["lineage"]["parent"] is None
