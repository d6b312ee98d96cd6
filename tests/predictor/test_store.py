"""Predictor store: atomic immutable publish, resolve/latest, retention with protected versions."""

from __future__ import annotations

import json
import os

import pytest

from ltr_sidecar.predictor import PromptLengthPredictor, load_predictor
from ltr_sidecar.predictor.runtime.store import PredictorStore, StoreError, open_store


@pytest.fixture
def artifact(tmp_path):
    d = tmp_path / "art"
    PromptLengthPredictor("src").save(d)
    return d


def test_publish_resolve_list(tmp_path, artifact):
    store = PredictorStore(tmp_path / "store")
    assert store.latest() is None and store.list_versions() == []
    with pytest.raises(StoreError, match="holds no versions"):
        store.resolve("latest")
    p1 = store.publish(artifact, "v1")
    p2 = store.publish(artifact, "v2")
    assert [v.version for v in store.list_versions()] == ["v1", "v2"]
    assert store.latest() == "v2" and store.resolve("latest") == p2 and store.resolve("v1") == p1
    assert load_predictor(p1).version == "v1"  # manifest version follows the store name
    assert json.loads((p2 / "predictor.json").read_text())["published_at"] > 0
    assert store.next_version() == "v3"
    assert not [d for d in os.listdir(store.root) if d.startswith(".")]  # no temporaries left


def test_versions_are_immutable_and_names_checked(tmp_path, artifact):
    store = PredictorStore(tmp_path / "s")
    store.publish(artifact, "v1")
    with pytest.raises(StoreError, match="already exists"):
        store.publish(artifact, "v1")
    for bad in ("", ".hidden", "a/b", "latest", "x" * 80):
        with pytest.raises(StoreError, match="invalid version"):
            store.publish(artifact, bad)
    with pytest.raises(StoreError, match="unknown predictor version 'v9'"):
        store.resolve("v9")


def test_half_written_version_is_never_visible(tmp_path, artifact):
    store = PredictorStore(tmp_path / "s")
    # an interrupted publish leaves only a dot-directory, which readers ignore
    tmp = store.root / ".tmp-v1-deadbeef"
    tmp.mkdir()
    (tmp / "predictor.json").write_text("{}")
    assert store.list_versions() == [] and store.latest() is None
    with pytest.raises(StoreError):
        store.resolve(".tmp-v1-deadbeef")
    assert store.clean_temporaries() == 1
    # a corrupt source is refused before anything is written
    (artifact / "predictor.json").write_text("{broken")
    with pytest.raises(StoreError, match="refusing to publish"):
        store.publish(artifact, "v1")
    assert list(store.root.iterdir()) == []


def test_retention_keeps_newest_and_protected(tmp_path, artifact):
    store = PredictorStore(tmp_path / "s")
    for i in range(1, 6):
        store.publish(artifact, f"v{i}")
    deleted = store.retain(keep=2, protect=["v1"])
    assert deleted == ["v2", "v3"]
    assert [v.version for v in store.list_versions()] == ["v1", "v4", "v5"]
    with pytest.raises(StoreError):
        store.retain(keep=0)


def test_open_store_uris(tmp_path):
    assert open_store(f"file://{tmp_path}/a").root == tmp_path / "a"
    assert open_store(tmp_path / "b").root == tmp_path / "b"
    with pytest.raises(StoreError, match="not supported yet"):
        open_store("s3://bucket/predictors")
    with pytest.raises(StoreError, match="not found"):
        PredictorStore(tmp_path / "missing", create=False)
