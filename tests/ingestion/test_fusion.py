"""Hybrid fusion settings: validation, the manifest entry and per-call overrides."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from ingestion import FusionConfig, FusionConfigError, KnowledgeIndex, build_index
from ingestion.building import save_fusion
from ingestion.fusion import fuse

ARTICLES = {
    "returns.md": "# Returns\n\nDelivered orders can be returned within 30 days.",
    "exchange.md": "# Exchanges\n\nAn exchange swaps an item for another variant.",
    "address.md": "# Address\n\nA pending order's address can be changed before shipping.",
    "gift.md": "# Gift cards\n\nGift card balances never expire and cannot be refunded.",
}


@pytest.fixture
def kb(tmp_path):
    folder = tmp_path / "kb"
    folder.mkdir()
    for name, text in ARTICLES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _manifest(index_dir):
    return json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"dense_weight": 1.5}, "dense_weight 1.5"),
        ({"dense_weight": -0.1}, "dense_weight -0.1"),
        ({"dense_weight": float("nan")}, "dense_weight nan"),
        ({"dense_weight": "0.5"}, "dense_weight '0.5'"),
        ({"method": "linear"}, "method 'linear'"),
        ({"rrf_k": -1}, "rrf_k -1"),
        ({"candidates": 0}, "candidates 0"),
        ({"bm25_query_k3": 0}, "bm25_query_k3 0"),
        ({"bm25_query_k3": "1.2"}, "bm25_query_k3 '1.2'"),
    ],
)
def test_invalid_setting_names_value_and_fix(settings, named):
    with pytest.raises(FusionConfigError) as caught:
        FusionConfig(**settings)

    message = str(caught.value)
    assert named in message
    assert "expected" in message
    assert "python -m ingestion tune" in message


def test_unknown_key_names_allowed_keys():
    with pytest.raises(
        FusionConfigError, match=r"unknown fusion setting\(s\) \['alpha'\]"
    ):
        FusionConfig.from_dict({"alpha": 0.3})


def test_settings_round_trip_through_dict():
    config = FusionConfig("convex", 0.8, 30, 50, bm25_query_k3=1.2)

    assert FusionConfig.from_dict(config.as_dict()) == config
    assert config.bm25_weight == pytest.approx(0.2)


def test_build_writes_default_fusion(kb, tmp_path, hashing_embedder):
    build_index(kb, tmp_path / "index", hashing_embedder, progress=False)

    assert _manifest(tmp_path / "index")["fusion"] == FusionConfig().as_dict()
    index = KnowledgeIndex.load(tmp_path / "index", hashing_embedder)
    assert index.fusion == FusionConfig()


def test_manifest_fusion_round_trip(kb, tmp_path, hashing_embedder):
    tuned = FusionConfig("convex", 0.7)
    build_index(kb, tmp_path / "index", hashing_embedder, progress=False, fusion=tuned)

    assert _manifest(tmp_path / "index")["fusion"] == tuned.as_dict()
    assert KnowledgeIndex.load(tmp_path / "index", hashing_embedder).fusion == tuned


def test_rebuild_keeps_stored_fusion(kb, tmp_path, hashing_embedder):
    index_dir = tmp_path / "index"
    build_index(kb, index_dir, hashing_embedder, progress=False)
    tuned = FusionConfig("rrf", 0.8, 10)
    save_fusion(index_dir, tuned, tuning={"metric": "nDCG@10", "score": 0.9})
    (kb / "extra.md").write_text("# Extra\n\nA new article.", encoding="utf-8")

    build_index(kb, index_dir, hashing_embedder, progress=False)

    manifest = _manifest(index_dir)
    assert manifest["fusion"] == tuned.as_dict()
    assert manifest["fusion_tuning"] == {"metric": "nDCG@10", "score": 0.9}
    assert manifest["chunk_count"] == len(ARTICLES) + 1


def test_rebuild_with_new_fusion_drops_tuning_record(kb, tmp_path, hashing_embedder):
    index_dir = tmp_path / "index"
    build_index(kb, index_dir, hashing_embedder, progress=False)
    save_fusion(index_dir, FusionConfig("rrf", 0.8), tuning={"score": 0.9})

    build_index(
        kb,
        index_dir,
        hashing_embedder,
        progress=False,
        fusion=FusionConfig("convex", 0.6),
    )

    manifest = _manifest(index_dir)
    assert manifest["fusion"] == FusionConfig("convex", 0.6).as_dict()
    assert "fusion_tuning" not in manifest


def test_load_argument_overrides_manifest(kb, tmp_path, hashing_embedder):
    build_index(
        kb,
        tmp_path / "index",
        hashing_embedder,
        progress=False,
        fusion=FusionConfig("convex", 0.7),
    )
    override = FusionConfig("rrf", 0.3, 10)

    index = KnowledgeIndex.load(tmp_path / "index", hashing_embedder, fusion=override)

    assert index.fusion == override


def test_invalid_manifest_fusion_fails_load(kb, tmp_path, hashing_embedder):
    index_dir = tmp_path / "index"
    build_index(kb, index_dir, hashing_embedder, progress=False)
    manifest = _manifest(index_dir)
    manifest["fusion"]["dense_weight"] = 2
    (index_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    with pytest.raises(FusionConfigError) as caught:
        KnowledgeIndex.load(index_dir, hashing_embedder)

    message = str(caught.value)
    assert "manifest.json" in message
    assert "dense_weight 2" in message
    assert "from 0 to 1" in message
    assert "FusionConfig(...) to KnowledgeIndex.load" in message
    index = KnowledgeIndex.load(index_dir, hashing_embedder, fusion=FusionConfig())
    assert len(index) == len(ARTICLES)


def test_invalid_manifest_fusion_fails_rebuild(kb, tmp_path, hashing_embedder):
    index_dir = tmp_path / "index"
    build_index(kb, index_dir, hashing_embedder, progress=False)
    manifest = _manifest(index_dir)
    manifest["fusion"]["method"] = "sum"
    (index_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    with pytest.raises(FusionConfigError, match="invalid fusion method 'sum'"):
        build_index(kb, index_dir, hashing_embedder, progress=False)
    build_index(kb, index_dir, hashing_embedder, progress=False, fusion=FusionConfig())
    assert _manifest(index_dir)["fusion"]["method"] == "rrf"


def test_index_without_fusion_entry_loads_defaults(kb, tmp_path, hashing_embedder):
    index_dir = tmp_path / "index"
    build_index(kb, index_dir, hashing_embedder, progress=False)
    manifest = _manifest(index_dir)
    del manifest["fusion"]
    (index_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    assert KnowledgeIndex.load(index_dir, hashing_embedder).fusion == FusionConfig()


def test_full_dense_share_ranks_like_dense_mode(kb, tmp_path, minilm):
    build_index(kb, tmp_path / "index", minilm, progress=False)
    index = KnowledgeIndex.load(tmp_path / "index", minilm)
    query = "can I send back something I bought"

    dense = index.search(query, k=4, mode="dense")
    shared = index.search(query, k=4, fusion=FusionConfig(dense_weight=1.0))
    keyword = index.search(query, k=4, fusion=FusionConfig(dense_weight=0.0))

    assert [hit.chunk_id for hit in shared] == [hit.chunk_id for hit in dense]
    assert [hit.chunk_id for hit in keyword] == [
        hit.chunk_id for hit in index.search(query, k=4, mode="bm25")
    ]


def test_convex_scores_within_unit_interval(kb, tmp_path, minilm):
    build_index(kb, tmp_path / "index", minilm, progress=False)
    index = KnowledgeIndex.load(
        tmp_path / "index", minilm, fusion=FusionConfig("convex", 0.6)
    )

    hits = index.search("return an order", k=4)

    assert hits
    assert all(0.0 <= hit.score <= 1.0 for hit in hits)
    assert [hit.score for hit in hits] == sorted(
        (hit.score for hit in hits), reverse=True
    )
    assert hits[0].source == "kb/returns.md"


def test_rank_candidates_matches_search(kb, tmp_path, hashing_embedder):
    build_index(kb, tmp_path / "index", hashing_embedder, progress=False)
    index = KnowledgeIndex.load(tmp_path / "index", hashing_embedder)
    candidates = index.score_candidates("order address", depth=100)

    for config in (
        FusionConfig(),
        FusionConfig("convex", 0.3),
        FusionConfig("rrf", 0.9, 10),
    ):
        ranked = index.rank_candidates(candidates, 3, fusion=config)
        searched = index.search("order address", k=3, fusion=config)
        assert [(hit.chunk_id, hit.score) for hit in ranked] == [
            (hit.chunk_id, hit.score) for hit in searched
        ]


def test_rank_candidates_rejects_other_k3(kb, tmp_path, hashing_embedder):
    build_index(kb, tmp_path / "index", hashing_embedder, progress=False)
    index = KnowledgeIndex.load(tmp_path / "index", hashing_embedder)
    candidates = index.score_candidates("order", depth=100)

    with pytest.raises(
        ValueError, match="call score_candidates with bm25_query_k3=1.2"
    ):
        index.rank_candidates(candidates, 3, fusion=FusionConfig(bm25_query_k3=1.2))


def test_query_k3_setting_reaches_bm25(kb, tmp_path, hashing_embedder):
    build_index(kb, tmp_path / "index", hashing_embedder, progress=False)
    index = KnowledgeIndex.load(tmp_path / "index", hashing_embedder)
    query = "gift gift gift exchange"
    bm25_only = FusionConfig("convex", 0.0)

    once = index.search(query, k=2, fusion=bm25_only)
    saturated = index.search(query, k=2, fusion=replace(bm25_only, bm25_query_k3=1.2))

    assert [hit.source for hit in once] == ["kb/exchange.md", "kb/gift.md"]
    assert [hit.source for hit in saturated] == ["kb/gift.md", "kb/exchange.md"]


def test_rank_candidates_rejects_shallow_scores(kb, tmp_path, hashing_embedder):
    build_index(kb, tmp_path / "index", hashing_embedder, progress=False)
    index = KnowledgeIndex.load(tmp_path / "index", hashing_embedder)
    candidates = index.score_candidates("order", depth=2)

    with pytest.raises(ValueError, match="call score_candidates with depth=100"):
        index.rank_candidates(candidates, 3)


def test_weighted_rrf_arithmetic():
    dense = np.array([0.9, 0.5, 0.1])
    keyword = np.array([0.0, 2.0, 1.0])

    fused = fuse(dense, keyword, FusionConfig("rrf", 0.75, 10), depth=3)

    assert fused[0] == pytest.approx(0.75 / 11)
    assert fused[1] == pytest.approx(0.75 / 12 + 0.25 / 11)
    assert fused[2] == pytest.approx(0.75 / 13 + 0.25 / 12)


def test_convex_arithmetic_uses_min_max():
    dense = np.array([0.9, 0.5, 0.1])
    keyword = np.array([0.0, 2.0, 1.0])

    fused = fuse(dense, keyword, FusionConfig("convex", 0.5), depth=3)

    assert fused == pytest.approx([0.5 * 1.0, 0.5 * 0.5 + 0.5 * 1.0, 0.5 * 0.5])


def test_batched_scoring_matches_single(kb, tmp_path, hashing_embedder):
    build_index(kb, tmp_path / "index", hashing_embedder, progress=False)
    index = KnowledgeIndex.load(tmp_path / "index", hashing_embedder)
    queries = ["order address", "", "gift gift card", "exchange a variant"]

    batched = index.score_candidates_many(
        queries, depth=100, bm25_query_k3_values=[None, 1.2]
    )

    for k3 in (None, 1.2):
        assert len(batched[k3]) == len(queries)
        for query, candidates in zip(queries, batched[k3]):
            single = index.score_candidates(query, depth=100, bm25_query_k3=k3)
            assert np.array_equal(candidates.rows, single.rows)
            assert np.allclose(candidates.dense, single.dense)
            assert np.array_equal(candidates.keyword, single.keyword)
            assert candidates.bm25_query_k3 == k3
