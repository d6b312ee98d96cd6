"""A tiny random-initialised Llama engine for tests, benchmarks and the demo (CPU, seconds).

`build_tiny_model(dir)` writes a ~1 M-parameter Llama with a small byte-level BPE tokenizer and a
chat template. EOS is unreachable (`eos_token_id = -1` in its generation config), so every request
generates exactly `max_tokens` tokens: replays reproduce recorded output lengths (the paper's
`ignore_eos` method) even on engines that reject the `ignore_eos` field.

`serve_engine(dir)` starts `transformers serve DIR --continuous-batching --device cpu` on 127.0.0.1
as a subprocess, waits until it answers a completion, yields its base URL, and stops it on exit.
Generation is gibberish but timing is real: continuous batching, streaming, a real HTTP server.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ltr_sidecar.devtools.ports import free_port

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"]
_CORPUS_TEXT = (
    "the a an of to in and is are was were be been for with on at by from as that this it its write explain "
    "describe list give summarize translate code python function story poem essay short long answer question "
    "please what why how when where who which one two three four five word words sentence paragraph "
    "hello world model request token tokens output input length rank schedule queue server engine fast slow"
)
_CORPUS_WORDS = _CORPUS_TEXT.split()


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of the tiny model; the defaults build in about a second and decode fast on one core."""

    vocab_size: int = 512
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 4096
    seed: int = 0


def _corpus(n_lines: int = 400) -> Iterator[str]:
    words = _CORPUS_WORDS
    for i in range(n_lines):
        yield " ".join(words[(i * 7 + j * 13) % len(words)] for j in range(12 + i % 9)) + "."


def build_tiny_model(path: str | os.PathLike[str], spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Write a tiny random-init Llama + BPE tokenizer to `path` (created; existing files replaced)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        bos_token=None,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)

    torch.manual_seed(spec.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=-1, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    model.save_pretrained(out, safe_serialization=True)
    # EOS unreachable: -1 never matches a token id, so generation always runs to max_tokens.
    gen_path = out / "generation_config.json"
    gen = json.loads(gen_path.read_text())
    gen["eos_token_id"] = -1
    gen_path.write_text(json.dumps(gen, indent=2))
    return out


def transformers_cli() -> list[str]:
    """The command that runs `transformers` from this interpreter's environment."""
    exe = Path(sys.executable).with_name("transformers")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "transformers.cli.transformers"]


def _probe(url: str, model_dir: str, timeout: float) -> bool:
    body = json.dumps({"model": model_dir, "prompt": "hello", "max_tokens": 1}).encode()
    req = urllib.request.Request(
        f"{url}/v1/completions", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


class EngineProcess:
    """A running `transformers serve` subprocess (see `serve_engine`)."""

    def __init__(self, model_dir: Path, port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.model_dir = model_dir
        self.port = port
        self.proc = proc
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"

    @property
    def model(self) -> str:
        """The model name the engine answers for (its local path)."""
        return str(self.model_dir)

    def log_tail(self, n: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


# `transformers serve --continuous-batching` sizes its KV cache from free RAM (~14 GB per tiny engine
# on a 24 GB machine; two engines get one OOM-killed). 128 blocks / 4096 batch tokens hold every test
# and benchmark workload here in ~1 GB.
KV_CACHE_ARGS = ("--cb-num-blocks", "128", "--cb-max-batch-tokens", "4096")


def start_engine(
    model_dir: str | os.PathLike[str],
    port: int | None = None,
    *,
    threads: int = 1,
    startup_timeout: float = 120.0,
    extra_args: list[str] | None = None,
) -> EngineProcess:
    """Start `transformers serve --continuous-batching` on 127.0.0.1 and wait until it generates.

    The KV cache is bounded by KV_CACHE_ARGS unless `extra_args` sets `--cb-num-blocks` itself."""
    model_dir = Path(model_dir).resolve()
    port = port or free_port()
    log_fd, log_name = tempfile.mkstemp(prefix="ltr-engine-", suffix=".log")
    cmd = [
        *transformers_cli(),
        "serve",
        str(model_dir),
        "--continuous-batching",
        "--device",
        "cpu",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *(extra_args or []),
    ]
    if "--cb-num-blocks" not in cmd:
        cmd += KV_CACHE_ARGS
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    proc = subprocess.Popen(cmd, stdout=log_fd, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    os.close(log_fd)
    engine = EngineProcess(model_dir, port, proc, Path(log_name))
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited with {proc.returncode}:\n{engine.log_tail()}")
        if _probe(engine.url, str(model_dir), timeout=10.0):
            return engine
        time.sleep(0.3)
    engine.stop()
    raise TimeoutError(f"transformers serve not ready after {startup_timeout:.0f}s:\n{engine.log_tail()}")


@contextlib.contextmanager
def serve_engine(
    model_dir: str | os.PathLike[str] | None = None, port: int | None = None, **kwargs: object
) -> Iterator[EngineProcess]:
    """Context manager: a ready tiny engine (built in a temp dir when `model_dir` is None)."""
    tmp: str | None = None
    if model_dir is None:
        tmp = tempfile.mkdtemp(prefix="ltr-tiny-model-")
        model_dir = build_tiny_model(tmp)
    engine = start_engine(model_dir, port, **kwargs)  # type: ignore[arg-type]
    try:
        yield engine
    finally:
        engine.stop()
        with contextlib.suppress(OSError):
            engine.log_path.unlink()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
