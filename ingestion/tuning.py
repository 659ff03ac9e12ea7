"""Tuning of hybrid fusion settings on labelled development queries.

Each query is scored by both retrievers once. Every fusion setting of the
grid is then ranked from those scores, so a grid costs one embedding per
query. :func:`cross_validate` estimates how a tuned setting does on queries
it was not tuned on.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ingestion.fusion import FusionConfig
from ingestion.index import Candidates, Hit, KnowledgeIndex

METRICS = ("hit@1", "hit@5", "recall@5", "recall@10", "MRR", "nDCG@10")
DEFAULT_METRIC = "nDCG@10"
# Chunks ranked per query before labels are deduplicated; enough for the
# metrics above to see ten distinct documents when documents have several chunks.
HITS_PER_QUERY = 100


@dataclass(frozen=True)
class LabelledQuery:
    text: str
    relevant: frozenset[str]
    """Labels of the correct results, compared with the ``match`` field of each hit."""
    group: str | None = None
    """Queries sharing a group stay in one cross-validation fold, such as the
    rephrasings of one question."""


@dataclass(frozen=True)
class TuningResult:
    best: FusionConfig
    score: float
    """Mean of the tuned metric for ``best`` over the queries."""
    metric: str
    table: list[tuple[FusionConfig, dict[str, float]]]
    """Every setting tried, in grid order, with its mean metrics."""


@dataclass(frozen=True)
class CrossValidation:
    metrics: dict[str, float]
    """Out-of-fold means: each query is scored with the setting tuned without its fold."""
    chosen: list[FusionConfig]
    """The setting tuned for each fold, in fold order."""
    folds: int


def default_grid() -> list[FusionConfig]:
    """List the fusion settings :func:`tune_fusion` tries, the default first.

    The grid covers reciprocal-rank fusion with rank offsets 10, 30 and 60
    and convex combination, each with the dense share from 0 to 1 in steps
    of 0.1. Each of these runs twice: BM25 counts a query term once, or it
    saturates repeats at ``bm25_query_k3 = 1.2`` (the document-side k1).
    """
    shares = [round(step / 10, 1) for step in range(11)]
    grid = [FusionConfig()]
    for k3 in (None, 1.2):
        for rrf_k in (10, 30, 60):
            grid += [
                FusionConfig("rrf", share, rrf_k, bm25_query_k3=k3) for share in shares
            ]
        grid += [FusionConfig("convex", share, bm25_query_k3=k3) for share in shares]
    return list(dict.fromkeys(grid))


def read_labelled_queries(path: Path) -> list[LabelledQuery]:
    """Read queries from a JSONL file, one ``{"query", "relevant", "group"?}`` object per line.

    ``relevant`` is a list of labels (strings or numbers); ``group`` is optional.
    Blank lines are ignored.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line is not such an object; the message names the line.
    """
    queries = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{str(path)!r} line {number}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where} is not valid JSON: {exc}") from None
            if not isinstance(item, dict):
                raise ValueError(
                    f"{where}: expected a JSON object, got {line.strip()[:80]!r}"
                )
            text, relevant = item.get("query"), item.get("relevant")
            if not isinstance(text, str) or not text.strip():
                raise ValueError(
                    f'{where}: "query" must be a non-empty string, got {text!r}'
                )
            if (
                not isinstance(relevant, list)
                or not relevant
                or not all(isinstance(label, (str, int)) for label in relevant)
            ):
                raise ValueError(
                    f'{where}: "relevant" must be a non-empty list of labels, got {relevant!r}'
                )
            group = item.get("group")
            queries.append(
                LabelledQuery(
                    text,
                    frozenset(str(label) for label in relevant),
                    None if group is None else str(group),
                )
            )
    if not queries:
        raise ValueError(f"{str(path)!r} contains no labelled queries")
    return queries


def score_ranking(
    ranking: Sequence[str], relevant: frozenset[str] | set[str]
) -> dict[str, float]:
    """Compute :data:`METRICS` for one ranked list of distinct labels, binary relevance."""
    first = next((i for i, label in enumerate(ranking) if label in relevant), None)
    gains = sum(
        1 / math.log2(i + 2)
        for i, label in enumerate(ranking[:10])
        if label in relevant
    )
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
    return {
        "hit@1": float(bool(set(ranking[:1]) & relevant)),
        "hit@5": float(bool(set(ranking[:5]) & relevant)),
        "recall@5": len(set(ranking[:5]) & relevant) / len(relevant),
        "recall@10": len(set(ranking[:10]) & relevant) / len(relevant),
        "MRR": 1 / (first + 1) if first is not None else 0.0,
        "nDCG@10": gains / ideal,
    }


def ranked_labels(hits: Sequence[Hit], match: str) -> list[str]:
    """Return the distinct labels of ``hits`` in order of their best hit.

    ``match`` is ``chunk_id``, ``source``, or a metadata key such as
    ``record_id``. Hits without that key are left out.
    """
    seen: dict[str, None] = {}
    for hit in hits:
        if match == "chunk_id":
            label = hit.chunk_id
        elif match == "source":
            label = hit.source
        elif match in hit.metadata:
            label = hit.metadata[match]
        else:
            continue
        seen.setdefault(str(label), None)
    return list(seen)


class FusionEvaluator:
    """Per-query metrics of fusion settings, each query scored by the retrievers once."""

    def __init__(
        self,
        index: KnowledgeIndex,
        queries: Sequence[LabelledQuery],
        *,
        match: str = "source",
        hits_per_query: int = HITS_PER_QUERY,
        depth: int | None = None,
        grid: Sequence[FusionConfig] | None = None,
    ) -> None:
        """Score every query for the settings of ``grid`` (:func:`default_grid` by default).

        ``depth`` must cover the largest ``candidates`` tried.

        Raises:
            ValueError: ``queries`` is empty.
        """
        if not queries:
            raise ValueError("no labelled queries given; tuning needs at least one")
        self.index = index
        self.queries = list(queries)
        self.match = match
        self.hits_per_query = hits_per_query
        self._depth = max(depth or 0, hits_per_query, FusionConfig().candidates)
        grid = list(grid) if grid is not None else default_grid()
        # One batched scoring pass covers every BM25 query-term saturation
        # of the grid; a setting outside it is scored on first use.
        self._candidates = index.score_candidates_many(
            [query.text for query in self.queries],
            depth=self._depth,
            bm25_query_k3_values=list(dict.fromkeys(c.bm25_query_k3 for c in grid)),
        )
        self._cache: dict[FusionConfig, list[dict[str, float]]] = {}

    def _scored(self, bm25_query_k3: float | None) -> list[Candidates]:
        if bm25_query_k3 not in self._candidates:
            self._candidates |= self.index.score_candidates_many(
                [query.text for query in self.queries],
                depth=self._depth,
                bm25_query_k3_values=[bm25_query_k3],
            )
        return self._candidates[bm25_query_k3]

    def per_query(self, config: FusionConfig) -> list[dict[str, float]]:
        """Return the metrics of each query under ``config``, in query order."""
        if config not in self._cache:
            self._cache[config] = [
                score_ranking(
                    ranked_labels(
                        self.index.rank_candidates(
                            candidates, self.hits_per_query, fusion=config
                        ),
                        self.match,
                    ),
                    query.relevant,
                )
                for query, candidates in zip(
                    self.queries, self._scored(config.bm25_query_k3)
                )
            ]
        return self._cache[config]

    def mean(
        self, config: FusionConfig, positions: Sequence[int] | None = None
    ) -> dict[str, float]:
        """Return the mean metrics of ``config`` over the queries at ``positions`` (all by default)."""
        rows = self.per_query(config)
        chosen = [rows[i] for i in positions] if positions is not None else rows
        return {name: statistics.fmean(row[name] for row in chosen) for name in METRICS}


def tune_fusion(
    evaluator: FusionEvaluator,
    *,
    grid: Sequence[FusionConfig] | None = None,
    metric: str = DEFAULT_METRIC,
    positions: Sequence[int] | None = None,
) -> TuningResult:
    """Return the setting of ``grid`` with the highest mean ``metric``.

    Only the queries at ``positions`` count (all by default). A tie goes to
    the setting listed first, so with :func:`default_grid` the default wins
    unless another setting scores higher.

    Raises:
        ValueError: ``metric`` is unknown or ``grid`` is empty.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {list(METRICS)}")
    grid = list(grid) if grid is not None else default_grid()
    if not grid:
        raise ValueError("the fusion grid is empty; give at least one FusionConfig")
    table = [(config, evaluator.mean(config, positions)) for config in grid]
    best, best_metrics = max(table, key=lambda entry: entry[1][metric])
    return TuningResult(best, best_metrics[metric], metric, table)


def fold_assignments(
    queries: Sequence[LabelledQuery], folds: int, seed: int = 0
) -> list[int]:
    """Assign each query a fold from 0 to ``folds - 1``, keeping each group in one fold.

    Groups are shuffled with ``seed`` and dealt out in turn, so the result is
    the same on every run. A query without a group is a group of its own.

    Raises:
        ValueError: ``folds`` is below 2 or above the number of groups.
    """
    keys = [
        query.group if query.group is not None else f"\x00{i}"
        for i, query in enumerate(queries)
    ]
    groups = list(dict.fromkeys(keys))
    if not 2 <= folds <= len(groups):
        raise ValueError(
            f"folds must be from 2 to the number of query groups ({len(groups)}), got {folds!r}"
        )
    random.Random(seed).shuffle(groups)
    fold_of = {group: position % folds for position, group in enumerate(groups)}
    return [fold_of[key] for key in keys]


def cross_validate(
    evaluator: FusionEvaluator,
    *,
    folds: int = 5,
    seed: int = 0,
    grid: Sequence[FusionConfig] | None = None,
    metric: str = DEFAULT_METRIC,
) -> CrossValidation:
    """Estimate tuned fusion on unseen queries by k-fold cross-validation.

    For each fold, the setting is tuned on the other folds and the fold's
    own queries are scored with it. The result averages those held-out
    scores over all queries.

    Raises:
        ValueError: as :func:`fold_assignments` and :func:`tune_fusion`.
    """
    assignment = fold_assignments(evaluator.queries, folds, seed)
    held_out: list[dict[str, float]] = []
    chosen = []
    for fold in range(folds):
        train = [i for i, value in enumerate(assignment) if value != fold]
        test = [i for i, value in enumerate(assignment) if value == fold]
        best = tune_fusion(evaluator, grid=grid, metric=metric, positions=train).best
        chosen.append(best)
        rows = evaluator.per_query(best)
        held_out += [rows[i] for i in test]
    metrics = {
        name: statistics.fmean(row[name] for row in held_out) for name in METRICS
    }
    return CrossValidation(metrics, chosen, folds)
