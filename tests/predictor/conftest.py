"""Fixtures for the predictor tests: a synthetic dataset whose length is a known function of the
prompt, a small fast-ranker spec, and a tiny random BERT built locally (no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support.predictor import FILLER, KEYWORDS, synthetic_examples, write_jsonl


@pytest.fixture
def synth_jsonl(tmp_path: Path) -> Path:
    rows = [{"prompt": e.prompt, "output_tokens": int(e.length)} for e in synthetic_examples(300)]
    return write_jsonl(tmp_path / "synth.jsonl", rows)


@pytest.fixture(autouse=True)
def _one_thread():
    """Keep torch on one thread: CI has 2 shared cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT + WordPiece tokenizer saved as a local HF model dir."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted(set(KEYWORDS + FILLER + ["give", "a", "answer"]))
    vocab = {w: i for i, w in enumerate(specials + words)}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(str(d))
    return d
