"""Asking for more results than the index holds."""

from __future__ import annotations

import pytest

from ingestion import KnowledgeIndex, build_index

ARTICLES = {
    "returns.md": "# Returns\n\nDelivered orders can be returned within 30 days of delivery.",
    "exchange.md": "# Exchanges\n\nAn exchange swaps an item for another variant of the same product.",
    "address.md": "# Address\n\nA pending order's shipping address can be changed before it ships.",
}


@pytest.fixture
def three_chunk_index(tmp_path, minilm) -> KnowledgeIndex:
    source = tmp_path / "kb"
    source.mkdir()
    for name, text in ARTICLES.items():
        (source / name).write_text(text, encoding="utf-8")
    build_index(source, tmp_path / "index", minilm, progress=False)
    return KnowledgeIndex.load(tmp_path / "index", minilm)


def test_index_holds_three_chunks(three_chunk_index):
    assert len(three_chunk_index) == 3


@pytest.mark.parametrize("mmr_lambda", [None, 0.5])
def test_k_above_size_returns_all_distinct(three_chunk_index, mmr_lambda):
    hits = three_chunk_index.search(
        "return or exchange an order", k=5, mmr_lambda=mmr_lambda
    )

    ids = [hit.chunk_id for hit in hits]
    assert len(hits) == 3
    assert len(set(ids)) == 3
    assert all(isinstance(chunk_id, str) and chunk_id for chunk_id in ids)
    assert "-1" not in ids


def test_scores_descend_without_mmr(three_chunk_index):
    scores = [hit.score for hit in three_chunk_index.search("order", k=5)]

    assert scores == sorted(scores, reverse=True)


def test_k_below_one_raises(three_chunk_index):
    with pytest.raises(ValueError, match="k must be at least 1, got 0"):
        three_chunk_index.search("order", k=0)


def test_mmr_lambda_out_of_range_raises(three_chunk_index):
    with pytest.raises(ValueError, match="mmr_lambda"):
        three_chunk_index.search("order", k=2, mmr_lambda=1.5)


def test_empty_index_returns_no_hits(tmp_path, minilm):
    source = tmp_path / "kb"
    source.mkdir()
    (source / "empty.md").write_text("", encoding="utf-8")
    build_index(source, tmp_path / "index", minilm, progress=False)

    index = KnowledgeIndex.load(tmp_path / "index", minilm)

    assert len(index) == 0
    assert index.search("anything", k=5) == []
