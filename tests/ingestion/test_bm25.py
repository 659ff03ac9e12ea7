"""BM25 scoring and its saved form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingestion.bm25 import BM25Index, tokenize


def test_tokenize_drops_stopwords_and_plurals():
    assert tokenize("The cards and the batteries were Lost!") == [
        "card",
        "battery",
        "lost",
    ]


def test_rarer_term_scores_higher():
    index = BM25Index.build(
        ["refund policy", "refund window", "gift card refund", "shipping"]
    )

    scores = index.scores("gift refund")

    assert int(np.argmax(scores)) == 2
    assert scores[3] == 0.0


def test_unknown_terms_score_zero():
    index = BM25Index.build(["refund policy"])

    assert index.scores("zebra").tolist() == [0.0]


def test_save_load_round_trip(tmp_path):
    index = BM25Index.build(["refund policy", "refund window", "shipping costs"])
    index.save(tmp_path)

    loaded = BM25Index.load(tmp_path)

    assert np.array_equal(
        loaded.scores("refund shipping"), index.scores("refund shipping")
    )


def test_load_rejects_other_tokenizer_version(tmp_path):
    BM25Index.build(["refund policy"]).save(tmp_path)
    meta_path = tmp_path / "bm25_vocabulary.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["tokenizer_version"] = 99
    meta_path.write_text(json.dumps(meta), encoding="utf-8")

    with pytest.raises(ValueError, match="rebuild the index"):
        BM25Index.load(tmp_path)


def test_empty_corpus_scores_nothing():
    index = BM25Index.build([])

    assert index.scores("anything").shape == (0,)


def test_repeated_query_term_weighs_more_with_k3():
    index = BM25Index.build(["refund window", "exchange window", "shipping"])

    once = index.scores("refund exchange exchange exchange")
    saturated = index.scores("refund exchange exchange exchange", query_k3=1.2)

    assert once[0] == pytest.approx(once[1])
    assert saturated[1] > saturated[0]
    assert saturated[0] == pytest.approx(once[0] * (2.2 * 1 / 2.2))
    assert saturated[1] == pytest.approx(once[1] * (2.2 * 3 / 4.2))
    assert saturated[2] == 0.0
