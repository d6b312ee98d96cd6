"""Suite-wide fixtures: the shared data folder (tests that need it skip with a reason)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("LTR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip: the CC BY-NC sets are read from there, never copied into the repo."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"shared data folder not present at {SHARED_DATA} (set LTR_SHARED_DATA)")
    return SHARED_DATA
