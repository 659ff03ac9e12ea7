"""Embedder mismatch, folders the product did not write, and the on-disk format."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from tests.ingestion.conftest import HashingEmbedder
from ingestion import (
    EmbedderMismatchError,
    IndexFormatError,
    KnowledgeIndex,
    build_index,
)


@pytest.fixture
def built_index(tmp_path):
    source = tmp_path / "kb"
    source.mkdir()
    (source / "faq.md").write_text(
        "# FAQ\n\n## Shipping\n\nShipping is free over $50.\n", encoding="utf-8"
    )
    index_dir = tmp_path / "index"
    build_index(source, index_dir, HashingEmbedder(32), progress=False)
    return index_dir


def test_manifest_records_embedder(built_index):
    manifest = json.loads((built_index / "manifest.json").read_text(encoding="utf-8"))

    assert manifest["format"] == "warden-knowledge-index"
    assert manifest["format_version"] == 1
    assert manifest["embedder"] == {"name": "test-hashing-32", "dimension": 32}
    assert manifest["chunk_count"] == 1
    assert set(manifest["files"]) == {"kb/faq.md"}
    assert len(manifest["files"]["kb/faq.md"]["sha256"]) == 64


def test_other_dimension_fails_at_load(built_index):
    with pytest.raises(EmbedderMismatchError) as caught:
        KnowledgeIndex.load(built_index, HashingEmbedder(64))

    message = str(caught.value)
    assert "'test-hashing-32' (dimension 32)" in message
    assert "'test-hashing-64' (dimension 64)" in message


def test_other_name_same_dimension_fails_at_load(built_index):
    with pytest.raises(EmbedderMismatchError, match="other-model-32"):
        KnowledgeIndex.load(built_index, HashingEmbedder(32, name="other-model"))


def test_other_embedder_cannot_update_index(built_index, tmp_path):
    with pytest.raises(EmbedderMismatchError):
        build_index(tmp_path / "kb", built_index, HashingEmbedder(64), progress=False)


def test_foreign_folder_rejected_without_unpickling(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    marker = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (foreign / "index.pkl").write_bytes(pickle.dumps(Trap()))
    (foreign / "index.faiss").write_bytes(b"\x00" * 64)

    with pytest.raises(IndexFormatError, match="manifest.json is missing"):
        KnowledgeIndex.load(foreign, HashingEmbedder(32))
    assert not marker.exists()


def test_manifest_of_other_format_rejected(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "manifest.json").write_text(
        '{"format": "something-else"}', encoding="utf-8"
    )

    with pytest.raises(IndexFormatError, match="not a warden-knowledge-index manifest"):
        KnowledgeIndex.load(foreign, HashingEmbedder(32))


def test_data_dir_outside_index_rejected(built_index):
    manifest_path = built_index / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["data_dir"] = "../elsewhere"
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")

    with pytest.raises(IndexFormatError, match="invalid data_dir"):
        KnowledgeIndex.load(built_index, HashingEmbedder(32))


def test_tampered_vectors_rejected(built_index):
    manifest = json.loads((built_index / "manifest.json").read_text(encoding="utf-8"))
    vectors_path = built_index / manifest["data_dir"] / "vectors.npy"
    np.save(vectors_path, np.zeros((1, 32), dtype=np.float32), allow_pickle=False)

    with pytest.raises(IndexFormatError, match="does not match its checksum"):
        KnowledgeIndex.load(built_index, HashingEmbedder(32))


def test_build_into_foreign_folder_rejected(tmp_path):
    source = tmp_path / "kb"
    source.mkdir()
    (source / "a.md").write_text("text", encoding="utf-8")
    target = tmp_path / "documents"
    target.mkdir()
    (target / "notes.txt").write_text("keep me", encoding="utf-8")

    with pytest.raises(IndexFormatError, match="not empty"):
        build_index(source, target, HashingEmbedder(32), progress=False)
    assert (target / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_missing_folder_is_reported(tmp_path):
    with pytest.raises(IndexFormatError, match="not found"):
        KnowledgeIndex.load(tmp_path / "absent", HashingEmbedder(32))
