"""Files that yield no text are reported per file and add no vectors."""

from __future__ import annotations

import json

import numpy as np

from tests.ingestion.conftest import write_pdf
from ingestion import KnowledgeIndex, build_index


def _stored_vector_count(index_dir) -> int:
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    vectors = np.load(
        index_dir / manifest["data_dir"] / "vectors.npy", allow_pickle=False
    )
    return vectors.shape[0]


def test_image_pdf_and_empty_txt_add_nothing(tmp_path, minilm):
    source = tmp_path / "kb"
    source.mkdir()
    write_pdf(
        source / "scanned_warranty.pdf", [None, None], image_pages=frozenset({0, 1})
    )
    (source / "empty.txt").write_bytes(b"")
    write_pdf(
        source / "shipping.pdf",
        [
            "Standard shipping takes 5 to 7 business days.",
            None,
            "Express shipping arrives within 2 business days for a fee of $15.",
        ],
    )
    index_dir = tmp_path / "index"

    report = build_index(source, index_dir, minilm, progress=False)

    by_path = {entry.path: entry for entry in report.files}
    scanned = by_path["kb/scanned_warranty.pdf"]
    empty = by_path["kb/empty.txt"]
    shipping = by_path["kb/shipping.pdf"]
    assert scanned.status == "skipped"
    assert "no text extracted" in scanned.reason
    assert "page(s) 1, 2" in scanned.reason
    assert scanned.chunks == 0
    assert empty.status == "skipped"
    assert "no text extracted" in empty.reason
    assert empty.chunks == 0
    assert shipping.status == "added"
    assert "page(s) 2 of 3" in shipping.reason

    index = KnowledgeIndex.load(index_dir, minilm)
    assert len(index) == shipping.chunks == 2
    assert _stored_vector_count(index_dir) == len(index)
    pages = sorted(hit.metadata["page"] for hit in index.search("shipping days", k=10))
    assert pages == [1, 3]


def test_question_only_image_pdf_answers_finds_nothing(tmp_path, minilm):
    source = tmp_path / "kb"
    source.mkdir()
    write_pdf(source / "scanned_warranty.pdf", [None], image_pages=frozenset({0}))
    write_pdf(
        source / "shipping.pdf", ["Standard shipping takes 5 to 7 business days."]
    )
    index_dir = tmp_path / "index"
    build_index(source, index_dir, minilm, progress=False)

    index = KnowledgeIndex.load(index_dir, minilm)

    assert (
        index.search("How many years of warranty cover the blender motor?", k=4) == []
    )
