"""Grid search and cross-validation of fusion settings on labelled queries."""

from __future__ import annotations

import json

import pytest
from tests.ingestion.conftest import HashingEmbedder, run_ingestion_cli

from ingestion import FusionConfig, KnowledgeIndex, build_index
from ingestion.tuning import (
    FusionEvaluator,
    LabelledQuery,
    cross_validate,
    default_grid,
    fold_assignments,
    read_labelled_queries,
    score_ranking,
    tune_fusion,
)

CODE_WORDS = [
    "amber",
    "basalt",
    "cobalt",
    "dahlia",
    "ember",
    "fennel",
    "garnet",
    "hazel",
    "indigo",
    "juniper",
    "kelp",
    "lilac",
    "maple",
    "nutmeg",
    "onyx",
    "pewter",
    "quartz",
    "russet",
    "saffron",
    "teal",
]


@pytest.fixture
def keyword_index(tmp_path) -> KnowledgeIndex:
    """An index where BM25 finds the right article and the dense side is noise.

    Each article contains a unique code word. The embedder hashes words into
    two dimensions, so its cosine similarities barely relate to the words.
    """
    kb = tmp_path / "kb"
    kb.mkdir()
    for number, word in enumerate(CODE_WORDS):
        (kb / f"{word}.md").write_text(
            f"# Procedure {number}\n\nThe {word} procedure applies to orders.",
            encoding="utf-8",
        )
    embedder = HashingEmbedder(dimension=2)
    build_index(kb, tmp_path / "index", embedder, progress=False)
    return KnowledgeIndex.load(tmp_path / "index", embedder)


def _code_word_queries() -> list[LabelledQuery]:
    return [
        LabelledQuery(f"{word} procedure", frozenset({f"kb/{word}.md"}), group=word)
        for word in CODE_WORDS
    ]


def test_tuning_picks_better_weights(keyword_index):
    evaluator = FusionEvaluator(keyword_index, _code_word_queries(), match="source")
    default_score = evaluator.mean(FusionConfig())["nDCG@10"]

    result = tune_fusion(evaluator)

    assert default_score < 0.99
    assert result.score == pytest.approx(1.0)
    assert result.score > default_score
    assert result.best.dense_weight < 0.5
    assert len(result.table) == len(default_grid())


def test_tuning_prefers_first_setting_on_tie(keyword_index):
    evaluator = FusionEvaluator(keyword_index, _code_word_queries(), match="source")
    grid = [FusionConfig("convex", 0.0), FusionConfig("rrf", 0.0)]

    result = tune_fusion(evaluator, grid=grid)

    assert result.table[0][1] == result.table[1][1]
    assert result.best == FusionConfig("convex", 0.0)


def test_tuning_rejects_unknown_metric(keyword_index):
    evaluator = FusionEvaluator(keyword_index, _code_word_queries()[:2])

    with pytest.raises(ValueError, match="unknown metric 'ndcg'"):
        tune_fusion(evaluator, metric="ndcg")


def test_cross_validation_scores_held_out_folds(keyword_index):
    evaluator = FusionEvaluator(keyword_index, _code_word_queries(), match="source")

    validation = cross_validate(evaluator, folds=4, seed=1)

    assert validation.folds == 4
    assert len(validation.chosen) == 4
    assert all(config.dense_weight < 0.5 for config in validation.chosen)
    assert validation.metrics["nDCG@10"] == pytest.approx(1.0)


def test_folds_keep_groups_together():
    queries = [
        LabelledQuery(f"q{i}", frozenset({"a"}), group=f"g{i // 3}") for i in range(12)
    ]

    first = fold_assignments(queries, 3, seed=7)
    second = fold_assignments(queries, 3, seed=7)

    assert first == second
    assert sorted(set(first)) == [0, 1, 2]
    for group_start in range(0, 12, 3):
        assert len(set(first[group_start : group_start + 3])) == 1


def test_folds_above_group_count_raise():
    queries = [LabelledQuery("q", frozenset({"a"}), group="same") for _ in range(5)]

    with pytest.raises(ValueError, match=r"number of query groups \(1\), got 2"):
        fold_assignments(queries, 2)


def test_score_ranking_metrics():
    metrics = score_ranking(["x", "a", "y", "b"], frozenset({"a", "b"}))

    assert metrics["hit@1"] == 0.0
    assert metrics["hit@5"] == 1.0
    assert metrics["recall@5"] == 1.0
    assert metrics["MRR"] == 0.5
    assert 0.0 < metrics["nDCG@10"] < 1.0


def test_read_labelled_queries(tmp_path):
    path = tmp_path / "queries.jsonl"
    path.write_text(
        '{"query": "refund", "relevant": ["a.md", 7], "group": 3}\n\n'
        '{"query": "exchange", "relevant": ["b.md"]}\n',
        encoding="utf-8",
    )

    queries = read_labelled_queries(path)

    assert queries == [
        LabelledQuery("refund", frozenset({"a.md", "7"}), "3"),
        LabelledQuery("exchange", frozenset({"b.md"}), None),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2 is not valid JSON"),
        ('["refund"]', "line 2: expected a JSON object"),
        (
            '{"query": "", "relevant": ["a"]}',
            'line 2: "query" must be a non-empty string',
        ),
        (
            '{"query": "refund", "relevant": []}',
            'line 2: "relevant" must be a non-empty list',
        ),
    ],
)
def test_invalid_query_line_names_line(tmp_path, line, message):
    path = tmp_path / "queries.jsonl"
    path.write_text(
        '{"query": "ok", "relevant": ["a"]}\n' + line + "\n", encoding="utf-8"
    )

    with pytest.raises(ValueError, match=message):
        read_labelled_queries(path)


def test_tune_command_stores_best_setting(tmp_path, minilm):
    kb = tmp_path / "kb"
    kb.mkdir()
    articles = {
        "returns.md": "# Returns\n\nDelivered orders can be returned within 30 days.",
        "address.md": "# Address\n\nA pending order's address can change before shipping.",
        "gift.md": "# Gift cards\n\nGift card balances never expire.",
    }
    for name, text in articles.items():
        (kb / name).write_text(text, encoding="utf-8")
    build_index(kb, tmp_path / "index", minilm, progress=False)
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        "\n".join(
            json.dumps({"query": query, "relevant": [source]})
            for query, source in [
                ("send back what I bought", "kb/returns.md"),
                ("change where my parcel goes", "kb/address.md"),
                ("does my gift card expire", "kb/gift.md"),
            ]
        ),
        encoding="utf-8",
    )

    dry = run_ingestion_cli(
        "tune",
        "--index",
        str(tmp_path / "index"),
        "--queries",
        str(queries),
        "--dry-run",
    )
    stored = run_ingestion_cli("tune", "--index", str(tmp_path / "index"), "--queries", str(queries))

    assert dry.returncode == 0, dry.stderr
    assert "3 queries; 88 settings" in dry.stdout
    assert "not stored" in dry.stdout
    assert stored.returncode == 0, stored.stderr
    manifest = json.loads(
        (tmp_path / "index" / "manifest.json").read_text(encoding="utf-8")
    )
    assert manifest["fusion_tuning"]["queries"] == 3
    assert manifest["fusion_tuning"]["metric"] == "nDCG@10"
    assert FusionConfig.from_dict(manifest["fusion"]).describe() in stored.stdout


def test_tune_command_reports_bad_queries_file(tmp_path):
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"query": "refund"}\n', encoding="utf-8")

    result = run_ingestion_cli("tune", "--index", str(tmp_path / "index"), "--queries", str(queries))

    assert result.returncode == 1
    assert "line 1" in result.stderr
    assert '"relevant" must be a non-empty list' in result.stderr
