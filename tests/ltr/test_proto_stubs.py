"""Committed gRPC stubs match protos/: regenerating them must give identical files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _load_generator(repo_root: Path):
    spec = importlib.util.spec_from_file_location("gen_proto", repo_root / "scripts" / "gen_proto.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_proto"] = module
    spec.loader.exec_module(module)
    return module


def test_stubs_do_not_drift(repo_root: Path, tmp_path: Path) -> None:
    gen = _load_generator(repo_root)
    written = gen.generate(tmp_path)
    assert written, "no proto files found"
    for fresh in written:
        committed = repo_root / "sidecar" / fresh.relative_to(tmp_path)
        assert committed.exists(), f"{committed} missing: run `make proto`"
        if committed.read_bytes() != fresh.read_bytes():
            pytest.fail(f"{committed} differs from protos/: run `make proto` and commit")


def test_api_surface_is_complete() -> None:
    from ltr.v1 import scheduler_pb2

    services = scheduler_pb2.DESCRIPTOR.services_by_name
    assert set(services["Scheduler"].methods_by_name) == {"Generate", "Rank", "GetQueue"}
    assert services["Scheduler"].methods_by_name["Generate"].server_streaming
    assert set(services["PredictorAdmin"].methods_by_name) == {"LoadPredictor", "GetPredictor"}
    fields = scheduler_pb2.GenerateRequest.DESCRIPTOR.fields_by_name
    for name in (
        "prompt",
        "chat",
        "max_tokens",
        "sampling",
        "priority",
        "deadline",
        "expected_output_tokens",
        "request_id",
    ):
        assert name in fields
    assert scheduler_pb2.DESCRIPTOR.package == "ltr.v1"
