"""Fast ranker and HF ranker: learning a known length function, artifact round trips, refusal of
corrupt or mismatched artifacts, baselines, the bundled cold-start artifact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ltr_sidecar.predictor import (
    Predictor,
    PredictorLoadError,
    PromptLengthPredictor,
    RandomPredictor,
    bundled_predictor_path,
    load_predictor,
)
from ltr_sidecar.predictor.training.pipeline import TrainSpec, train_predictor
from ltr_sidecar.stats import kendall_tau_b
from tests.support.predictor import FAST_SMALL, synthetic_examples


def _tau(pred, examples):
    return kendall_tau_b(pred.score([e.prompt for e in examples]), [-e.length for e in examples])


@pytest.fixture(scope="module")
def trained_fast():
    train = synthetic_examples(400, seed=0)
    spec = TrainSpec(
        backbone="fast",
        fast_options=FAST_SMALL,
        version="t1",
        device="cpu",
        train={"epochs": 8, "progress": False, "lr": 1e-2},
    )
    pred, result = train_predictor(train, spec)
    return pred, result


def test_fast_ranker_learns_known_length_function(trained_fast):
    pred, result = trained_fast
    test = synthetic_examples(200, seed=99)
    assert _tau(pred, test) > 0.8
    assert result.best_val_tau is not None and result.best_val_tau > 0.8
    assert isinstance(pred, Predictor)
    assert pred.meta["label_scheme"]["type"] == "buckets"
    assert pred.meta["data_fingerprint"].startswith("sha256:")


def test_save_load_round_trip_identical_scores(trained_fast, tmp_path):
    pred, _ = trained_fast
    pred.save(tmp_path / "a")
    loaded = load_predictor(tmp_path / "a")
    prompts = [e.prompt for e in synthetic_examples(50, seed=5)]
    assert loaded.score(prompts) == pred.score(prompts)
    assert loaded.version == "t1" and loaded.backbone == "fast"
    manifest = json.loads((tmp_path / "a" / "predictor.json").read_text())
    for key in (
        "version",
        "backbone",
        "max_input",
        "label_scheme",
        "data_fingerprint",
        "val_kendall_tau",
        "files",
    ):
        assert key in manifest


def test_score_order_independent_of_batching(trained_fast):
    pred, _ = trained_fast
    prompts = [e.prompt for e in synthetic_examples(70, seed=3)]
    batch = pred.score(prompts)
    single = [pred.score([p])[0] for p in prompts]
    assert batch == pytest.approx(single, rel=1e-5, abs=1e-6)
    assert pred.score([]) == []
    with pytest.raises(TypeError):
        pred.score("one string")


def test_corrupt_and_mismatched_artifacts_are_refused(trained_fast, tmp_path):
    pred, _ = trained_fast
    good = tmp_path / "good"
    pred.save(good)

    with pytest.raises(PredictorLoadError, match="not a directory"):
        load_predictor(tmp_path / "missing")

    no_manifest = tmp_path / "nm"
    shutil.copytree(good, no_manifest)
    (no_manifest / "predictor.json").unlink()
    with pytest.raises(PredictorLoadError, match=r"no predictor\.json"):
        load_predictor(no_manifest)

    bad_json = tmp_path / "bj"
    shutil.copytree(good, bad_json)
    (bad_json / "predictor.json").write_text("{not json")
    with pytest.raises(PredictorLoadError, match="corrupt manifest"):
        load_predictor(bad_json)

    flipped = tmp_path / "flip"
    shutil.copytree(good, flipped)
    w = flipped / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(PredictorLoadError, match="checksum mismatch"):
        load_predictor(flipped)

    truncated = tmp_path / "trunc"
    shutil.copytree(good, truncated)
    (truncated / "weights.safetensors").unlink()
    with pytest.raises(PredictorLoadError, match="missing"):
        load_predictor(truncated)

    def edit(name, change):
        d = tmp_path / name
        shutil.copytree(good, d)
        m = json.loads((d / "predictor.json").read_text())
        change(m)
        (d / "predictor.json").write_text(json.dumps(m))
        return d

    with pytest.raises(PredictorLoadError, match="unknown predictor backbone"):
        load_predictor(edit("bb", lambda m: m.update(backbone="gpt-9")))
    with pytest.raises(PredictorLoadError, match="unsupported artifact format"):
        load_predictor(edit("fmt", lambda m: m.update(format="ltr-predictor/99")))
    with pytest.raises(PredictorLoadError, match="cannot load fast-ranker weights"):
        load_predictor(edit("shape", lambda m: m["config"].update(buckets=1 << 10)))
    with pytest.raises(PredictorLoadError, match="feature version 1"):
        load_predictor(edit("feat", lambda m: m["config"].update(feature_version=1)))
    with pytest.raises(PredictorLoadError, match="lacks"):
        load_predictor(edit("keys", lambda m: m.pop("version")))


def test_baselines_are_predictors(tmp_path):
    short, long_ = "Say hi.", "Please write a very long and detailed essay about the history of Rome " * 3
    pl = PromptLengthPredictor()
    assert isinstance(pl, Predictor)
    s = pl.score([short, long_])
    assert s[0] > s[1]
    pl.save(tmp_path / "pl")
    again = load_predictor(tmp_path / "pl")
    assert again.score([short, long_]) == s and again.version == "prompt-length"
    r = RandomPredictor(seed=3)
    assert isinstance(r, Predictor) and len(r.score(["a", "b", "c"])) == 3


def test_classification_baseline(tmp_path):
    train = synthetic_examples(300, seed=1)
    spec = TrainSpec(
        backbone="fast",
        objective="classify",
        num_classes=8,
        fast_options=FAST_SMALL,
        device="cpu",
        train={"epochs": 10, "progress": False, "lr": 1e-2},
    )
    pred, _ = train_predictor(train, spec)
    assert pred.meta["label_scheme"]["type"] == "classes"
    assert len(pred.meta["label_scheme"]["boundaries"]) == 7
    tau = _tau(pred, synthetic_examples(150, seed=7))
    assert tau > 0.5
    pred.save(tmp_path / "c")
    loaded = load_predictor(tmp_path / "c")
    prompts = [e.prompt for e in synthetic_examples(20, seed=8)]
    assert loaded.score(prompts) == pred.score(prompts)


def test_bundled_cold_start_artifact():
    path = bundled_predictor_path()
    assert (path / "predictor.json").is_file()
    size = sum(f.stat().st_size for f in path.iterdir())
    assert size <= 2 * 1024 * 1024
    pred = load_predictor(path)
    assert pred.backbone == "fast" and pred.version.startswith("bundled")
    s = pred.score(
        [
            "Reply with yes or no: is water wet?",
            "Write a detailed, multi-section tutorial on building a compiler in Rust, with code.",
        ]
    )
    assert len(s) == 2 and s[0] > s[1]


def test_hf_backbone_train_save_load(tiny_bert_dir: Path, tmp_path):
    train = synthetic_examples(96, seed=2)
    for pooling in ("mean", "last"):
        spec = TrainSpec(
            backbone=str(tiny_bert_dir),
            pooling=pooling,
            max_input=32,
            device="cpu",
            version=f"hf-{pooling}",
            train={"epochs": 1, "progress": False, "lr": 1e-3},
        )
        pred, result = train_predictor(train, spec)
        assert pred.backbone == "hf" and result.epochs_run == 1
        out = tmp_path / pooling
        pred.save(out)
        assert (out / "backbone" / "config.json").is_file()
        loaded = load_predictor(out)
        prompts = [e.prompt for e in synthetic_examples(12, seed=4)]
        assert loaded.score(prompts) == pytest.approx(pred.score(prompts), abs=1e-5)
        assert json.loads((out / "predictor.json").read_text())["config"]["pooling"] == pooling


def test_hf_bad_backbone_is_clear_error(tmp_path):
    spec = TrainSpec(backbone=str(tmp_path / "nothing"), device="cpu")
    with pytest.raises(PredictorLoadError, match="not 'fast', 'minilm' or a local HF model dir"):
        train_predictor(synthetic_examples(20), spec)


def test_ensemble_round_trip_and_standardisation(trained_fast, tmp_path):
    from ltr_sidecar.predictor.runtime.ensemble import EnsemblePredictor

    pred, _ = trained_fast
    prompts = [e.prompt for e in synthetic_examples(60, seed=9)]
    ens = EnsemblePredictor.fit([pred, PromptLengthPredictor()], prompts, weights=[2.0, 0.5], version="e1")
    scores = ens.score(prompts)
    assert abs(sum(scores) / len(scores)) < 1e-6  # standardised on the fitting prompts
    assert _tau(ens, synthetic_examples(200, seed=99)) > 0.7
    ens.save(tmp_path / "ens")
    loaded = load_predictor(tmp_path / "ens")
    assert loaded.backbone == "ensemble" and loaded.version == "e1"
    assert loaded.score(prompts) == pytest.approx(scores, abs=1e-9)
    with pytest.raises(ValueError):
        EnsemblePredictor([], [])
    (tmp_path / "ens" / "members" / "0" / "weights.safetensors").write_bytes(b"junk")
    with pytest.raises(PredictorLoadError, match="checksum mismatch"):
        load_predictor(tmp_path / "ens")
