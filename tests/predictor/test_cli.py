"""`ltr predictor train|eval|score|list|retrain` through the `ltr` dispatcher, in process."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest

from ltr.cli import main as ltr_main
from ltr_sidecar.predictor import PromptLengthPredictor, bundled_predictor_path, load_predictor
from ltr_sidecar.predictor.ops.retrain import parse_target, parse_window
from ltr_sidecar.predictor.runtime.calibration import calibration_of
from ltr_sidecar.predictor.runtime.store import PredictorStore
from tests.support.predictor import synthetic_examples, write_jsonl, write_traces

FAST_ARGS = ["--backbone", "fast", "--fast-buckets", "16384", "--fast-dim", "8", "--lr", "0.01", "--quiet"]


def retrain_argv(traces: Path, store_root: Path) -> list[str]:
    """`ltr predictor retrain` over every trace in `traces` into `store_root`."""
    return ["predictor", "retrain", "--traces", str(traces), "--store", str(store_root), "--window", "0"]


def run_ltr(capsys, *argv: str) -> tuple[int, str, str]:
    code = ltr_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    data = write_jsonl(
        d / "train.jsonl",
        [{"prompt": e.prompt, "output_tokens": int(e.length)} for e in synthetic_examples(300)],
    )
    assert (
        ltr_main(
            [
                "predictor",
                "train",
                "--data",
                str(data),
                "--out",
                str(d / "model"),
                "--epochs",
                "6",
                "--length-unit",
                "tokens",
                *FAST_ARGS,
            ]
        )
        == 0
    )
    return d / "model"


def test_train_writes_loadable_artifact(trained_dir):
    pred = load_predictor(trained_dir)
    assert pred.version == "model" and pred.backbone == "fast"
    cal = calibration_of(pred)  # fitted on the 30 validation examples
    assert cal is not None and cal.unit == "tokens" and cal.n == 30
    scores = pred.score(["give a tiny answer", "give a exhaustive answer"])
    assert cal.expected_tokens(scores[0]) < cal.expected_tokens(scores[1])


def test_calibrate_rewrites_the_manifest_idempotently(capsys, tmp_path, trained_dir, synth_jsonl):
    art = tmp_path / "art"
    shutil.copytree(trained_dir, art)
    argv = ["predictor", "calibrate", str(art), "--data", str(synth_jsonl), "--unit", "tokens"]
    code, out, err = run_ltr(capsys, *argv, "--max-knots", "8")
    assert code == 0, err
    report = json.loads(out)  # one JSON object
    assert report["knots"] <= 8 and report["n"] == 300 and report["unit"] == "tokens"
    assert report["spearman"] > 0.8 and report["mae"] < report["mae_median_baseline"]
    first = (art / "predictor.json").read_bytes()
    assert run_ltr(capsys, *argv, "--max-knots", "8")[0] == 0
    assert (art / "predictor.json").read_bytes() == first  # same data, same manifest
    cal = calibration_of(load_predictor(art))  # checksums still valid
    assert cal is not None and len(cal.xs) == report["knots"] and cal.n == 300
    # a malformed calibration is replaced, not a reason to refuse the artifact
    manifest = json.loads(first)
    manifest["calibration"]["ys"].reverse()
    (art / "predictor.json").write_text(json.dumps(manifest))
    code, _, err = run_ltr(capsys, *argv, "--max-knots", "8")
    assert code == 0 and "replacing a malformed calibration" in err
    assert (art / "predictor.json").read_bytes() == first
    code, _, err = run_ltr(
        capsys, "predictor", "calibrate", str(tmp_path / "nope"), "--data", str(synth_jsonl)
    )
    assert code == 1 and "not found" in err


def test_eval_json_contract(capsys, trained_dir, synth_jsonl):
    code, out, _ = run_ltr(
        capsys, "predictor", "eval", "--predictor", str(trained_dir), "--data", str(synth_jsonl), "--json"
    )
    assert code == 0
    result = json.loads(out)  # exactly one JSON object on stdout
    for key in ("kendall_tau", "n", "score_ms_p50", "score_ms_p99", "batch_ms_per_request", "version"):
        assert key in result
    assert result["n"] == 300 and result["kendall_tau"] > 0.8
    code, out, _ = run_ltr(
        capsys,
        "predictor",
        "eval",
        "--predictor",
        "prompt-length",
        "--data",
        str(synth_jsonl),
        "--json",
        "--no-latency",
    )
    assert code == 0 and json.loads(out)["kendall_tau"] < 0.8


def test_score_from_stdin(capsys, monkeypatch, trained_dir):
    monkeypatch.setattr(sys, "stdin", io.StringIO("give a tiny answer\ngive a exhaustive answer\n"))
    code, out, _ = run_ltr(capsys, "predictor", "score", "--predictor", str(trained_dir))
    scores = [float(x) for x in out.split()]
    assert code == 0 and len(scores) == 2 and scores[0] > scores[1]
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"prompt": "hi"}\nnot json\n'))
    code, _, err = run_ltr(capsys, "predictor", "score", "--predictor", "bundled", "--jsonl")
    assert code == 1 and "stdin line 2" in err


def test_errors_are_clear_exit_1(capsys, tmp_path, synth_jsonl):
    code, _, err = run_ltr(
        capsys, "predictor", "eval", "--predictor", str(tmp_path), "--data", str(synth_jsonl)
    )
    assert code == 1 and "no predictor.json" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nope\n")
    code, _, err = run_ltr(
        capsys, "predictor", "train", "--data", str(bad), "--out", str(tmp_path / "o"), *FAST_ARGS
    )
    assert code == 1 and "not valid JSON" in err


def _retrain(capsys, traces: Path, store: PredictorStore, *extra: str) -> tuple[int, str, str]:
    """`ltr predictor retrain` over all traces with the small fast-ranker settings (6 epochs)."""
    return run_ltr(
        capsys,
        *retrain_argv(traces, store.root),
        "--min-samples",
        "100",
        "--epochs",
        "6",
        *extra,
        *FAST_ARGS,
    )


def test_retrain_insufficient_data_exit_3(capsys, tmp_path):
    traces = write_traces(tmp_path / "t", 20)
    result_file = tmp_path / "result.json"
    code, out, _ = run_ltr(
        capsys,
        "predictor",
        "retrain",
        "--traces",
        str(traces),
        "--store",
        str(tmp_path / "store"),
        "--window",
        "0",
        "--min-samples",
        "100",
        "--result-file",
        str(result_file),
        *FAST_ARGS,
    )
    assert code == 3
    result = json.loads(out)
    assert result["status"] == "insufficient_data" and result["samples"] == 20 and "100" in result["reason"]
    assert json.loads(result_file.read_text()) == result


def test_retrain_beats_weak_base_and_publishes_lineage(capsys, tmp_path):
    traces = write_traces(tmp_path / "t", 360)
    store = PredictorStore(tmp_path / "store")
    weak = tmp_path / "weak"
    PromptLengthPredictor("weak").save(weak)  # deliberately weak current version
    store.publish(weak, "v1")
    code, out, err = _retrain(capsys, traces, store)
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "published" and result["candidate"] == "v2" and result["current"] == "v1"
    assert result["candidate_kendall_tau"] > result["current_kendall_tau"] + 0.3
    manifest = json.loads((store.resolve("v2") / "predictor.json").read_text())
    lineage = manifest["lineage"]
    # trained fresh (a prompt-length current version has no weights to fine-tune): no parent to derive from
    assert lineage["parent"] is None and lineage["current_version"] == "v1"
    assert lineage["samples"] == {"train": 288, "holdout": 72}
    assert lineage["data_window"]["last_sample"] == 1_000_000.0 + 359
    assert load_predictor(store.resolve("v2")).version == "v2"
    assert manifest["calibration"]["unit"] == "tokens"  # trace lengths are engine output tokens

    # the gate: an unreachable minimum rejects (exit 4) and publishes nothing
    code, out, _ = run_ltr(
        capsys,
        *retrain_argv(traces, store.root),
        *["--min-samples", "100", "--epochs", "1"],
        "--min-kendall-tau",
        "0.999",
        *FAST_ARGS,
    )
    assert code == 4
    assert json.loads(out)["status"] == "rejected"
    assert [v.version for v in store.list_versions()] == ["v1", "v2"]

    code, out, _ = run_ltr(capsys, "predictor", "list", "--store", str(store.root), "--json")
    assert code == 0 and [v["version"] for v in json.loads(out)] == ["v1", "v2"]


def test_window_parsing_and_annotation_report():
    assert parse_window("30m") == 1800 and parse_window("24h") == 86400 and parse_window("0") is None
    with pytest.raises(ValueError, match="bad --window"):
        parse_window("soon")
    assert parse_target("ns1/llama-retrain-result") == ("ns1", "llama-retrain-result")
    for bad in ("just-a-name", "a/b/c", "/x", "x/"):
        with pytest.raises(ValueError, match="NAMESPACE/NAME"):
            parse_target(bad)


def _inverted_base_store(tmp_path: Path) -> PredictorStore:
    """A store whose v1 is a deliberately bad fast ranker: trained to rank long answers first."""
    from ltr_sidecar.data.datasets import Example
    from ltr_sidecar.predictor.training.pipeline import TrainSpec, train_predictor

    inverted = [Example(e.prompt, 1000.0 - e.length) for e in synthetic_examples(200, seed=5)]
    spec = TrainSpec(
        backbone="fast",
        fast_options={"buckets": 16384, "dim": 8},
        device="cpu",
        train={"epochs": 3, "progress": False, "lr": 0.01},
    )
    weak, _ = train_predictor(inverted, spec)
    weak.save(tmp_path / "weak")
    store = PredictorStore(tmp_path / "store")
    store.publish(tmp_path / "weak", "v1")
    return store


def test_retrain_fine_tunes_a_weak_neural_base(capsys, tmp_path):
    store = _inverted_base_store(tmp_path)
    traces = write_traces(tmp_path / "t", 300)
    code, out, err = _retrain(capsys, traces, store, "--keep", "1")
    assert code == 0, err
    result = json.loads(out)
    assert result["current_kendall_tau"] < 0 < 0.5 < result["candidate_kendall_tau"]
    assert json.loads((store.resolve("v2") / "predictor.json").read_text())["parent"] == "v1"
    assert [v.version for v in store.list_versions()] == ["v1", "v2"]  # keep=1 but the base is protected


def test_train_with_consensus_pretraining(capsys, tmp_path):
    d = tmp_path / "alpaca"
    d.mkdir()
    examples = synthetic_examples(120, seed=4)
    write_jsonl(d / "prompts.jsonl", [{"prompt_id": i, "prompt": e.prompt} for i, e in enumerate(examples)])
    rows = [
        {"prompt_id": i, "model": f"m{k}", "response_words": int(e.length * (1 + 0.1 * k)) + k}
        for k in range(3)
        for i, e in enumerate(examples)
    ]
    write_jsonl(d / "response_lengths_all_models.jsonl", rows)
    code, _, err = run_ltr(
        capsys,
        "predictor",
        "train",
        "--data",
        str(d),
        "--model-name",
        "m0",
        "--consensus-from",
        str(d),
        "--consensus-top-k",
        "1",
        "--epochs",
        "2",
        "--out",
        str(tmp_path / "m"),
        *FAST_ARGS,
    )
    assert code == 0, err
    manifest = json.loads((tmp_path / "m" / "predictor.json").read_text())
    assert "pretrain" in manifest["label_scheme"] and manifest["model_name"] == "m0"
    code, _, err = run_ltr(
        capsys,
        "predictor",
        "train",
        "--data",
        str(d),
        "--consensus-from",
        str(d),
        "--consensus-top-k",
        "1",
        "--out",
        str(tmp_path / "x"),
        *FAST_ARGS,
    )
    assert code == 1 and "needs --model-name" in err


def test_first_retrain_of_an_empty_store_fine_tunes_the_bundled_ranker(capsys, tmp_path):
    """No --base, no --backbone, empty store: start from the bundled ranker (seconds on CPU; a fresh
    fast ranker of its shape competes), not a from-scratch train of the default backbone; current =
    bundled (what pods serve at cold start)."""
    traces = write_traces(tmp_path / "t", 200)
    store = PredictorStore(tmp_path / "store")
    code, out, err = run_ltr(
        capsys,
        *retrain_argv(traces, store.root),
        *["--min-samples", "100", "--epochs", "1"],
    )
    result = json.loads(out)
    bundled = load_predictor(bundled_predictor_path())
    assert result["current"] == bundled.version, err
    assert f"fine-tuning {bundled.version}" in err
    assert result["start"]["chosen"] in ("fine-tuned", "fresh")  # a fresh fast ranker competed
    if code == 0:  # published: same kind of model; its parent is the bundled ranker unless fresh won
        manifest = json.loads((store.resolve(result["candidate"]) / "predictor.json").read_text())
        parent = bundled.version if result["start"]["chosen"] == "fine-tuned" else None
        assert manifest["lineage"]["parent"] == parent and manifest["backbone"] == bundled.backbone
    else:  # the gate may reject one epoch on synthetic data; it still trained from the bundled ranker
        assert code == 4 and result["status"] == "rejected", err


def test_retrain_under_a_time_budget_stops_in_time(capsys, tmp_path):
    import time

    traces = write_traces(tmp_path / "t", 600)
    store = PredictorStore(tmp_path / "store")
    weak = tmp_path / "weak"
    PromptLengthPredictor("weak").save(weak)
    store.publish(weak, "v1")
    t0 = time.perf_counter()
    # thousands of epochs and no early stop: only the 3 s budget can end training
    code, out, err = _retrain(
        capsys, traces, store, "--epochs", "100000", "--patience", "100000", "--time-budget", "3s"
    )
    elapsed = time.perf_counter() - t0
    result = json.loads(out)
    assert code == 0, err
    assert result["time_budget_exhausted"] is True
    assert result["train_seconds"] <= 3.0  # training, calibration and manifest included
    assert elapsed < 3.0 + 20.0  # loading traces, evaluating and publishing around the 3 s of training
    assert result["candidate_kendall_tau"] > result["current_kendall_tau"]  # the best state was kept


def test_time_budget_flag_takes_a_positive_duration(capsys):
    for bad in ("five", "0", "-3s"):
        with pytest.raises(SystemExit) as exc:
            ltr_main(["predictor", "train", "--data", "x.jsonl", "--out", "o", "--time-budget", bad])
        assert exc.value.code == 2
        assert "--time-budget" in capsys.readouterr().err


def test_retrain_without_a_backbone_lets_a_fresh_fast_ranker_compete(capsys, tmp_path):
    store = _inverted_base_store(tmp_path)
    traces = write_traces(tmp_path / "t", 300)
    argv = [
        *retrain_argv(traces, store.root),
        "--min-samples",
        "100",
        "--epochs",
        "6",
        "--lr",
        "0.01",
        "--quiet",
    ]
    code, out, err = run_ltr(capsys, *argv)  # no --backbone: the CronJob's command line
    assert code == 0, err
    start = json.loads(out)["start"]
    assert start["chosen"] == "fresh" and start["fresh_val_tau"] > start["fine_tuned_val_tau"]
    manifest = json.loads((store.resolve("v2") / "predictor.json").read_text())
    assert (
        manifest["lineage"]["parent"] is None and manifest["config"]["buckets"] == 16384
    )  # the base's shape
