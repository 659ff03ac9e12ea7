"""Reranking of fused hits: the order follows the reranker, and bad rerankers fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestion import CrossEncoderReranker, EmbedderReranker, KnowledgeIndex, build_index

ARTICLES = {
    "returns.md": "# Returns\n\nDelivered items can be returned within 30 days for a refund.\n",
    "cancel.md": "# Cancelling\n\nA pending order can be cancelled before it ships.\n",
    "shipping.md": "# Shipping\n\nOrders ship within two business days by ground courier.\n",
    "payments.md": "# Payments\n\nWe accept gift cards, PayPal and credit cards.\n",
}


class ReversedLength:
    """A reranker that prefers the shortest text, an order no retriever here would produce."""

    name = "reversed-length"

    def score(self, query, texts):
        return [-float(len(text)) for text in texts]


class FixedScores:
    """A reranker that returns the same scores whatever the texts."""

    def __init__(self, scores):
        self.name = "fixed-scores"
        self._scores = scores

    def score(self, query, texts):
        return self._scores


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, minilm) -> Path:
    source = tmp_path_factory.mktemp("kb")
    for name, text in ARTICLES.items():
        (source / name).write_text(text, encoding="utf-8")
    target = tmp_path_factory.mktemp("index")
    build_index(source, target, minilm, progress=False)
    return target


@pytest.fixture(scope="module")
def index(index_dir, minilm) -> KnowledgeIndex:
    return KnowledgeIndex.load(index_dir, minilm)


def test_hits_follow_reranker_order(index):
    hits = index.search("order refund shipping cards", k=3, reranker=ReversedLength(), rerank_depth=4)
    lengths = [len(hit.text) for hit in hits]
    assert lengths == sorted(lengths)
    assert [hit.score for hit in hits] == [-float(n) for n in lengths]


def test_embedder_reranker_puts_best_match_first(index, minilm):
    hits = index.search("can I cancel my order before it ships", k=2, reranker=EmbedderReranker(minilm))
    assert hits[0].source.endswith("cancel.md")
    assert hits[0].score >= hits[1].score


def test_index_default_reranker_is_used(index_dir, minilm):
    default = KnowledgeIndex.load(index_dir, minilm, reranker=ReversedLength())
    hits = default.search("order refund shipping cards", k=2)
    assert hits[0].score == -float(len(hits[0].text))


@pytest.mark.parametrize(
    ("scores", "message"),
    [([1.0], "returned 1 scores for 4 texts"), ([0.0, float("nan"), 0.0, 0.0], "non-finite scores")],
)
def test_bad_reranker_scores_raise(index, scores, message):
    with pytest.raises(ValueError, match=message):
        index.search("order refund shipping cards", k=2, reranker=FixedScores(scores), rerank_depth=4)


def test_reranker_with_mmr_is_rejected(index):
    with pytest.raises(ValueError, match="cannot be combined with reranker 'reversed-length'"):
        index.search("refund", k=2, reranker=ReversedLength(), mmr_lambda=0.5)


def test_cross_encoder_folder_must_exist(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        CrossEncoderReranker(tmp_path / "missing")


def test_runtime_rejects_missing_reranker_folder(tmp_path):
    from warden.errors import ConfigurationError  # noqa: PLC0415
    from warden.runtime import open_index  # noqa: PLC0415
    from warden.settings import Settings  # noqa: PLC0415

    settings = Settings.from_env(data_dir=tmp_path, reranker_dir=tmp_path / "no-model")
    with pytest.raises(ConfigurationError, match="WARDEN_RERANKER_DIR: no cross-encoder model in"):
        open_index(settings)
