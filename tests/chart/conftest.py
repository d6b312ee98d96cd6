"""Fixtures for the chart, image and example checks: a helm binary and a cached chart renderer."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support.chart import REPO_ROOT, Renderer


@pytest.fixture(scope="session")
def helm() -> str:
    """Path to helm: PATH (as `make test` sets it) or .tools/bin; CI must have it, locally skip."""
    local = REPO_ROOT / ".tools" / "bin" / "helm"
    found = shutil.which("helm") or (str(local) if local.exists() else None)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("helm not found on PATH or in .tools/bin (run `make tools`)")
    pytest.skip("helm not found on PATH or in .tools/bin (run `make tools`)")


@pytest.fixture(scope="session")
def render(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Renderer:
    """`render(values_dict_or_None, *values_files)` → list of manifests (cached per input)."""
    return Renderer(helm, tmp_path_factory.mktemp("values"))
