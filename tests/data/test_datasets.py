"""The one data loader: every accepted layout, clear errors, traces, and every shared file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ltr_sidecar.data.datasets import DataError, load_examples, load_many, record_length
from tests.support.predictor import write_jsonl


def test_length_field_preference():
    assert record_length({"output_tokens": 5, "response_words": 9}) == 5.0
    assert record_length({"response_tokens": 7, "response_words": 9}) == 7.0
    assert record_length({"response_words": 9}) == 9.0
    assert record_length({"response": "one two  three"}) == 3.0
    assert record_length({"response_words": -1}) is None
    assert record_length({"response_words": True}) is None
    assert record_length({}) is None


def test_plain_jsonl_and_model_filter(tmp_path):
    f = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"prompt": "p1", "output_tokens": 3, "model": "m1"},
            {"prompt": "p2", "response": "a b c d", "model": "m2"},
            {"prompt": "p3", "response_words": 4},
        ],
    )
    ex = load_examples(f)
    assert [(e.prompt, e.length, e.model) for e in ex] == [
        ("p1", 3.0, "m1"),
        ("p2", 4.0, "m2"),
        ("p3", 4.0, None),
    ]
    assert [e.prompt for e in load_examples(f, "m2")] == ["p2"]
    with pytest.raises(DataError, match="no records for model 'zz'"):
        load_examples(f, "zz")


def test_alpaca_layout_join(tmp_path):
    d = tmp_path / "alpaca"
    d.mkdir()
    write_jsonl(d / "prompts.jsonl", [{"prompt_id": 0, "prompt": "A"}, {"prompt_id": 1, "prompt": "B"}])
    write_jsonl(
        d / "response_lengths_all_models.jsonl",
        [
            {"prompt_id": 0, "model": "x", "response_words": 10},
            {"prompt_id": 1, "model": "x", "response_words": 20},
            {"prompt_id": 0, "model": "y", "response_words": 30},
        ],
    )
    ex = load_examples(d, "x")
    assert [(e.prompt, e.length, e.prompt_id) for e in ex] == [("A", 10.0, "0"), ("B", 20.0, "1")]
    assert len(load_examples(d / "prompts.jsonl", "y")) == 1  # either file names the layout
    with pytest.raises(DataError, match="no lengths for model 'q'"):
        load_examples(d, "q")


def test_responses_dir_layout(tmp_path):
    d = tmp_path / "arena"
    (d / "responses").mkdir(parents=True)
    write_jsonl(d / "prompts.jsonl", [{"prompt_id": "u1", "prompt": "A"}])
    write_jsonl(d / "responses" / "m1.jsonl", [{"prompt_id": "u1", "prompt": "A", "response_tokens": 12}])
    write_jsonl(d / "responses" / "m2.jsonl", [{"prompt_id": "u1", "prompt": "A", "response_tokens": 99}])
    assert load_examples(d, "m2")[0].length == 99.0
    with pytest.raises(DataError, match="choose one with model_name"):
        load_examples(d)
    with pytest.raises(DataError, match="available: m1, m2"):
        load_examples(d, "m3")


def test_directory_of_jsonl_and_load_many(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"prompt": "x", "output_tokens": 1}])
    write_jsonl(tmp_path / "b.jsonl", [{"prompt": "y", "output_tokens": 2}])
    assert len(load_examples(tmp_path)) == 2
    assert len(load_many([tmp_path / "a.jsonl", tmp_path / "b.jsonl"])) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json at all\n", "not valid JSON"),
        ("[1, 2]\n", "expected a JSON object"),
        ('{"timestamp": 1, "input_tokens": 5, "output_tokens": 3}\n', "no usable example"),
        ("", "no examples found"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, content, message):
    f = tmp_path / "bad.jsonl"
    f.write_text(content)
    with pytest.raises(DataError, match=message):
        load_examples(f)


def test_missing_path_and_binary(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_examples(tmp_path / "nope.jsonl")
    f = tmp_path / "bin.jsonl"
    f.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError):
        load_examples(f)


@pytest.mark.shared
def test_every_shared_file_loads_or_fails_clearly(shared_data: Path):
    expectations = {
        "alpaca-eval": ("Meta-Llama-3-8B-Instruct", 805),
        "arena-hard-v2.0": ("llama3.1-8b-instruct", 750),
        "gpteacher-gpt4": (None, 14131),
        "code-alpaca-2k": (None, 2017),
        "hh-rlhf-harmless-base-test": (None, 4624),
        "self-instruct-user-oriented-252": ("davinci", 252),
    }
    for name, (model, n) in expectations.items():
        assert len(load_examples(shared_data / name, model)) == n, name
    for f in sorted(shared_data.rglob("*.jsonl")):
        if "azure" in f.parts[-2]:
            with pytest.raises(DataError, match="no usable example"):
                load_examples(f)  # arrival traces: token counts but no prompt text
        elif f.name in ("prompts.jsonl", "response_lengths_all_models.jsonl") and "alpaca" in f.parts[-2]:
            assert len(load_examples(f, "gpt4_1106_preview")) == 805
        elif f.name == "prompts.jsonl":
            with pytest.raises(DataError, match="choose one with model_name"):
                load_examples(f)
        else:
            assert load_examples(f), f
    for f in sorted(shared_data.rglob("*.csv")):
        with pytest.raises(DataError):
            load_examples(f)
