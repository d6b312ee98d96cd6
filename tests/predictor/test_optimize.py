"""`ltr predictor optimize`: int8 / shorter-input derived encoder artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ltr.cli import main as ltr_main
from ltr_sidecar.predictor import load_predictor
from ltr_sidecar.predictor.ops.optimize import optimize_artifact
from ltr_sidecar.predictor.runtime.artifact import PredictorLoadError
from ltr_sidecar.predictor.runtime.hf import HFRanker
from ltr_sidecar.predictor.training.pipeline import TrainSpec, train_predictor
from tests.support.predictor import synthetic_examples, write_jsonl


@pytest.fixture(scope="module")
def hf_artifact(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = TrainSpec(
        backbone=str(tiny_bert_dir),
        max_input=32,
        device="cpu",
        version="enc-v1",
        train={"epochs": 2, "progress": False, "lr": 1e-3},
    )
    pred, _ = train_predictor(synthetic_examples(96, seed=2), spec)
    out = tmp_path_factory.mktemp("hf") / "enc-v1"
    pred.save(out)
    return out


def test_int8_artifact_scores_close_to_float32_and_stays_trainable(hf_artifact: Path, tmp_path: Path):
    out = tmp_path / "enc-int8"
    manifest = optimize_artifact(hf_artifact, out, quantize="int8", max_tokens=16)
    assert manifest["version"] == "enc-v1-int8-16" and manifest["parent"] == "enc-v1"
    assert manifest["config"]["quantize"] == "int8" and manifest["max_input"] == 16
    fp32, int8 = load_predictor(hf_artifact), load_predictor(out)
    module = int8.module
    assert isinstance(module, HFRanker)
    prompts = [e.prompt for e in synthetic_examples(40, seed=4)]
    a, b = fp32.score(prompts), int8.score(prompts)
    assert a != b  # int8 and a shorter input really changed the computation
    assert module._int8 is not None and "DynamicQuantizedLinear" in repr(module._int8)
    assert not any("_int8" in k for k in module.state_dict())  # the cache is never saved or trained
    module.train()
    assert module._int8 is None  # weights may change: quantise again after training
    module.eval()
    # the derived artifact holds float32 weights: saving it again round-trips
    int8.save(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "predictor.json").read_text())["config"]["quantize"] == "int8"


def test_optimize_refuses_fast_rankers_and_existing_outputs(hf_artifact: Path, tmp_path: Path):
    from ltr_sidecar.predictor import bundled_predictor_path

    with pytest.raises(PredictorLoadError, match="encoder"):
        optimize_artifact(bundled_predictor_path(), tmp_path / "x")
    with pytest.raises(ValueError, match="already exists"):
        optimize_artifact(hf_artifact, hf_artifact.parent)


def test_optimize_cli_reports_tau_and_latency_side_by_side(hf_artifact: Path, tmp_path: Path, capsys):
    data = write_jsonl(
        tmp_path / "d.jsonl",
        [{"prompt": e.prompt, "output_tokens": e.length} for e in synthetic_examples(30)],
    )
    out = tmp_path / "opt"
    code = ltr_main(["predictor", "optimize", str(hf_artifact), "--out", str(out), "--data", str(data)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["version"] == "enc-v1-int8"
    assert report["before"]["n"] == report["after"]["n"] == 30
    assert report["kendall_tau_change"] == pytest.approx(
        report["after"]["kendall_tau"] - report["before"]["kendall_tau"], abs=1e-3
    )
    assert report["batched_speedup"] > 0 and load_predictor(out).version == "enc-v1-int8"


def test_encoder_scoring_batches_are_capped_in_padded_tokens(hf_artifact: Path):
    from ltr_sidecar.predictor.runtime.neural import TOKENS_PER_BATCH

    pred = load_predictor(hf_artifact)
    prompts = ["x" * 4000] * 10 + ["short"] * 100  # 32-token cap: long prompts cost 32 tokens each
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    batches = pred._batches(order, prompts)
    assert sorted(j for b in batches for j in b) == list(range(len(prompts)))
    assert all(len(b) <= pred.batch_size for b in batches)
    assert all(len(b) * min(32, len(prompts[b[-1]]) // 4 + 2) <= TOKENS_PER_BATCH for b in batches)
    scores = pred.score(prompts)
    assert scores[:10] == pytest.approx([scores[0]] * 10, abs=1e-5)  # batching never changes a score


def test_int8_copy_quantises_per_output_channel_by_default(hf_artifact: Path):
    from ltr_sidecar.predictor.runtime.hf import int8_copy

    backbone = load_predictor(hf_artifact).module.backbone
    schemes = {
        per_channel: {
            m.weight().qscheme()
            for m in int8_copy(backbone, per_channel).modules()
            if hasattr(m, "weight") and callable(m.weight)
        }
        for per_channel in (True, False)
    }
    assert schemes[True] == {torch.per_channel_affine} and schemes[False] == {torch.per_tensor_affine}
