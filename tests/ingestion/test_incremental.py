"""Incremental re-ingest and the atomic manifest swap."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingestion import KnowledgeIndex, build_index


def _manifest(index_dir):
    return json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture
def kb(tmp_path):
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "returns.md").write_text(
        "# Returns\n\nReturns are accepted for 30 days.\n", encoding="utf-8"
    )
    (folder / "shipping.md").write_text(
        "# Shipping\n\nOrders ship in 2 days.\n", encoding="utf-8"
    )
    (folder / "warranty.md").write_text(
        "# Warranty\n\nElectronics carry one year of warranty.\n", encoding="utf-8"
    )
    return folder


def test_rebuild_reports_each_file_status(kb, tmp_path, hashing_embedder):
    index_dir = tmp_path / "index"
    build_index(kb, index_dir, hashing_embedder, progress=False)
    (kb / "returns.md").write_text(
        "# Returns\n\nReturns are accepted for 60 days.\n", encoding="utf-8"
    )
    (kb / "warranty.md").unlink()
    (kb / "payments.md").write_text(
        "# Payments\n\nWe take cards and gift cards.\n", encoding="utf-8"
    )

    report = build_index(kb, index_dir, hashing_embedder, progress=False)

    statuses = {entry.path: entry.status for entry in report.files}
    assert statuses == {
        "kb/payments.md": "added",
        "kb/returns.md": "updated",
        "kb/shipping.md": "unchanged",
        "kb/warranty.md": "removed",
    }
    assert report.embedded == 2
    assert report.totals == {
        "added": 1,
        "updated": 1,
        "unchanged": 1,
        "removed": 1,
        "skipped": 0,
    }
    index = KnowledgeIndex.load(index_dir, hashing_embedder)
    assert len(index) == 3
    assert (
        index.search("warranty electronics", k=5, filters={"source": "kb/warranty.md"})
        == []
    )
    assert (
        "60 days"
        in index.search("returns", k=1, filters={"source": "kb/returns.md"})[0].text
    )


def test_chunk_ids_stable_across_builds(kb, tmp_path, hashing_embedder):
    build_index(kb, tmp_path / "one", hashing_embedder, progress=False)
    build_index(kb, tmp_path / "two", hashing_embedder, progress=False)

    def ids(index_dir):
        data = index_dir / _manifest(index_dir)["data_dir"] / "chunks.jsonl"
        return [
            json.loads(line)["id"]
            for line in data.read_text(encoding="utf-8").splitlines()
        ]

    assert ids(tmp_path / "one") == ids(tmp_path / "two")


def test_unchanged_vectors_are_reused(kb, tmp_path, hashing_embedder):
    index_dir = tmp_path / "index"
    build_index(kb, index_dir, hashing_embedder, progress=False)
    first = _manifest(index_dir)
    before = np.load(index_dir / first["data_dir"] / "vectors.npy", allow_pickle=False)
    (kb / "zzz.md").write_text("# Extra\n\nMore text.\n", encoding="utf-8")

    build_index(kb, index_dir, hashing_embedder, progress=False)

    second = _manifest(index_dir)
    after = np.load(index_dir / second["data_dir"] / "vectors.npy", allow_pickle=False)
    assert second["data_dir"] != first["data_dir"]
    assert np.array_equal(after[: len(before)], before)


def test_old_data_folder_removed_after_swap(kb, tmp_path, hashing_embedder):
    index_dir = tmp_path / "index"
    build_index(kb, index_dir, hashing_embedder, progress=False)
    (kb / "shipping.md").write_text(
        "# Shipping\n\nOrders ship in 1 day.\n", encoding="utf-8"
    )

    build_index(kb, index_dir, hashing_embedder, progress=False)

    names = sorted(path.name for path in index_dir.iterdir())
    assert names == sorted([_manifest(index_dir)["data_dir"], "manifest.json"])


def test_failed_write_keeps_previous_index(kb, tmp_path, hashing_embedder, monkeypatch):
    index_dir = tmp_path / "index"
    build_index(kb, index_dir, hashing_embedder, progress=False)
    manifest_before = (index_dir / "manifest.json").read_text(encoding="utf-8")
    (kb / "shipping.md").write_text(
        "# Shipping\n\nOrders ship in 1 day.\n", encoding="utf-8"
    )

    def failing_save(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("ingestion.building.np.save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        build_index(kb, index_dir, hashing_embedder, progress=False)
    monkeypatch.undo()

    assert (index_dir / "manifest.json").read_text(encoding="utf-8") == manifest_before
    assert not [path for path in index_dir.iterdir() if path.name.startswith(".tmp-")]
    index = KnowledgeIndex.load(index_dir, hashing_embedder)
    assert (
        "2 days"
        in index.search("shipping", k=1, filters={"source": "kb/shipping.md"})[0].text
    )


def test_unreadable_file_drops_its_old_chunks(kb, tmp_path, hashing_embedder):
    index_dir = tmp_path / "index"
    build_index(kb, index_dir, hashing_embedder, progress=False)
    (kb / "shipping.md").write_bytes(b"\x00\x01\x02binary")

    report = build_index(kb, index_dir, hashing_embedder, progress=False)

    entry = {e.path: e for e in report.files}["kb/shipping.md"]
    assert entry.status == "skipped"
    assert len(KnowledgeIndex.load(index_dir, hashing_embedder)) == 2


def test_changed_chunk_size_rechunks_everything(kb, tmp_path, hashing_embedder):
    from ingestion import ChunkingConfig

    index_dir = tmp_path / "index"
    build_index(kb, index_dir, hashing_embedder, progress=False)

    report = build_index(
        kb,
        index_dir,
        hashing_embedder,
        progress=False,
        chunking=ChunkingConfig(max_chars=500),
    )

    assert report.embedded == 3
    assert _manifest(index_dir)["chunking"] == {"version": 1, "max_chars": 500}


def test_index_inside_source_is_not_ingested(kb, hashing_embedder):
    index_dir = kb / "index"
    build_index(kb, index_dir, hashing_embedder, progress=False)

    report = build_index(kb, index_dir, hashing_embedder, progress=False)

    paths = [entry.path for entry in report.files]
    assert paths == ["kb/returns.md", "kb/shipping.md", "kb/warranty.md"]
    assert report.totals["unchanged"] == 3
