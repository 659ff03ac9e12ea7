"""The same document twice, and batches in which two chunks share an id."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingestion import DuplicateChunkError, KnowledgeIndex, build_index
from ingestion.building import deduplicate_chunks
from ingestion.chunking import chunk_document
from ingestion.loaders import Document, Section

POLICY = "# Refunds\n\nRefunds go back to the original payment method.\n\n## Gift cards\n\nGift card refunds are immediate.\n"


def _counts(index_dir):
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    data = index_dir / manifest["data_dir"]
    vectors = np.load(data / "vectors.npy", allow_pickle=False).shape[0]
    chunks = len((data / "chunks.jsonl").read_text(encoding="utf-8").splitlines())
    return manifest["chunk_count"], chunks, vectors


def test_second_ingest_of_same_file_adds_nothing(tmp_path, hashing_embedder):
    source = tmp_path / "kb"
    source.mkdir()
    (source / "refunds.md").write_text(POLICY, encoding="utf-8")
    index_dir = tmp_path / "index"

    first = build_index(source, index_dir, hashing_embedder, progress=False)
    second = build_index(source, index_dir, hashing_embedder, progress=False)

    assert first.files[0].status == "added"
    assert second.files[0].status == "unchanged"
    assert second.embedded == 0
    assert second.chunk_count == first.chunk_count == 2
    assert _counts(index_dir) == (2, 2, 2)


def test_byte_identical_copy_is_skipped(tmp_path, hashing_embedder):
    source = tmp_path / "kb"
    source.mkdir()
    (source / "refunds.md").write_text(POLICY, encoding="utf-8")
    (source / "refunds_copy.md").write_text(POLICY, encoding="utf-8")

    report = build_index(source, tmp_path / "index", hashing_embedder, progress=False)

    statuses = {entry.path: (entry.status, entry.reason) for entry in report.files}
    assert statuses["kb/refunds.md"] == ("added", None)
    assert statuses["kb/refunds_copy.md"] == ("skipped", "same bytes as kb/refunds.md")
    assert _counts(tmp_path / "index") == (2, 2, 2)


def test_results_never_repeat_a_chunk(tmp_path, hashing_embedder):
    source = tmp_path / "kb"
    source.mkdir()
    (source / "refunds.md").write_text(POLICY, encoding="utf-8")
    (source / "refunds_v2.md").write_text(POLICY + "\nUpdated.\n", encoding="utf-8")
    build_index(source, tmp_path / "index", hashing_embedder, progress=False)
    index = KnowledgeIndex.load(tmp_path / "index", hashing_embedder)

    hits = index.search("gift card refunds", k=10)

    pairs = [(hit.source, hit.chunk_id) for hit in hits]
    assert len(pairs) == len(set(pairs)) == len(index)


def test_records_sharing_id_different_text_rejected(tmp_path, hashing_embedder):
    source = tmp_path / "kb"
    source.mkdir()
    records = [
        {"id": "a1", "title": "Returns", "content": "Return within 30 days."},
        {"id": "a1", "title": "Returns", "content": "Return within 60 days."},
    ]
    (source / "articles.json").write_text(json.dumps(records), encoding="utf-8")
    (source / "ok.md").write_text(POLICY, encoding="utf-8")

    report = build_index(source, tmp_path / "index", hashing_embedder, progress=False)

    entry = {e.path: e for e in report.files}["kb/articles.json"]
    assert entry.status == "skipped"
    assert "record id 'a1' occurs twice with different content" in entry.reason
    assert entry.chunks == 0
    assert _counts(tmp_path / "index") == (2, 2, 2)


def test_records_sharing_id_and_text_are_deduplicated(tmp_path, hashing_embedder):
    source = tmp_path / "kb"
    source.mkdir()
    record = {"id": "a1", "title": "Returns", "content": "Return within 30 days."}
    (source / "articles.json").write_text(
        json.dumps([record, record]), encoding="utf-8"
    )

    report = build_index(source, tmp_path / "index", hashing_embedder, progress=False)

    assert report.files[0].status == "added"
    assert report.files[0].reason == "1 duplicate chunk(s) dropped"
    assert _counts(tmp_path / "index") == (1, 1, 1)


def test_deduplicate_raises_before_embedding():
    first = Document("T", [Section("one")], {"record_id": "x"}, "x")
    second = Document("T", [Section("two")], {"record_id": "x"}, "x")
    chunks = chunk_document("kb/a.json", first) + chunk_document("kb/a.json", second)

    with pytest.raises(DuplicateChunkError):
        deduplicate_chunks(chunks)
