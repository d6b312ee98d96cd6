"""The chart's CRD is a byte-for-byte copy of crds/ (single source of truth), kept by scripts/sync_crd.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.chart import CRD_FILE, REPO_ROOT, Renderer, by_kind, load_yaml_docs

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import sync_crd


def test_chart_crds_match_source() -> None:
    problems = sync_crd.drift()
    assert not problems, "\n".join(problems) + "\nrun: python scripts/sync_crd.py"


def test_rendered_crd_is_the_source(render: Renderer) -> None:
    (rendered,) = by_kind(render(), "CustomResourceDefinition")
    (source,) = load_yaml_docs(CRD_FILE)
    assert rendered == source


def test_crd_contract(render: Renderer) -> None:
    (crd,) = by_kind(render(), "CustomResourceDefinition")
    spec = crd["spec"]
    assert spec["group"] == "ltrserving.dev" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "LTRServing" and spec["names"]["plural"] == "ltrservings"
    assert "ltrs" in spec["names"]["shortNames"]
    (version,) = [v for v in spec["versions"] if v["name"] == "v1alpha1"]
    assert version["served"] and version["storage"]
    assert "status" in version["subresources"] and "scale" in version["subresources"]


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "crds", tmp_path / "chart-crds"
    src.mkdir()
    (src / "a.yaml").write_text("kind: A\n")
    return src, dst


def test_sync_and_drift_detection(tmp_path: Path) -> None:
    src, dst = _tree(tmp_path)
    assert sync_crd.drift(src, dst) == [f"{dst / 'a.yaml'} is missing"]
    assert sync_crd.sync(src, dst) == [dst / "a.yaml"]
    assert sync_crd.drift(src, dst) == []
    (dst / "a.yaml").write_text("kind: B\n")
    (diff,) = sync_crd.drift(src, dst)
    assert "-kind: A" in diff and "+kind: B" in diff
    (dst / "stale.yaml").write_text("kind: C\n")
    assert any("stale.yaml has no source" in p for p in sync_crd.drift(src, dst))
    sync_crd.sync(src, dst)
    assert sorted(p.name for p in dst.iterdir()) == ["a.yaml"] and sync_crd.drift(src, dst) == []


def test_no_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        sync_crd.drift(tmp_path, tmp_path / "x")
