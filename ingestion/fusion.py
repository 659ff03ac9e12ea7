"""Fusion of the dense and BM25 rankings in hybrid search, and its settings.

Two methods are offered. Weighted reciprocal-rank fusion adds
``weight / (rrf_k + rank)`` per retriever and needs no score calibration.
The convex combination adds the retrievers' min-max normalised scores,
weighted, and keeps how far apart two candidates score. Both rank the same way
under a common scaling of the weights, so one share, ``dense_weight``,
describes them, and BM25 gets ``1 - dense_weight``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from ingestion.errors import FusionConfigError

FusionMethod = Literal["rrf", "convex"]
FUSION_METHODS: tuple[str, ...] = ("rrf", "convex")
_FIX = (
    "correct it in the index's manifest.json, pass FusionConfig(...) to "
    "KnowledgeIndex.load, or run `python -m ingestion tune`"
)


@dataclass(frozen=True)
class FusionConfig:
    """Settings of hybrid fusion; stored under ``fusion`` in an index's manifest."""

    method: FusionMethod = "rrf"
    dense_weight: float = 0.5
    """Share of the dense retriever, from 0 to 1; BM25 gets ``1 - dense_weight``."""
    rrf_k: int = 60
    """Rank offset of reciprocal-rank fusion; a larger value flattens the rank
    curve. Ignored by ``convex``."""
    candidates: int = 100
    """Chunks taken from each retriever's ranking before fusion."""
    bm25_query_k3: float | None = None
    """Saturation of repeated query terms on the BM25 side (Okapi's k3);
    ``None`` counts each distinct query term once."""

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise FusionConfigError(
                f"invalid fusion method {self.method!r}: expected one of "
                f"{list(FUSION_METHODS)}; {_FIX}"
            )
        weight = self.dense_weight
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
            or not 0.0 <= weight <= 1.0
        ):
            raise FusionConfigError(
                f"invalid fusion dense_weight {weight!r}: expected a number from 0 to 1 "
                f"(BM25 gets 1 - dense_weight); {_FIX}"
            )
        for name, value, low in (
            ("rrf_k", self.rrf_k, 0),
            ("candidates", self.candidates, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise FusionConfigError(
                    f"invalid fusion {name} {value!r}: expected an integer of at least "
                    f"{low}; {_FIX}"
                )

        k3 = self.bm25_query_k3
        if k3 is not None and (
            isinstance(k3, bool)
            or not isinstance(k3, (int, float))
            or not math.isfinite(k3)
            or k3 <= 0
        ):
            raise FusionConfigError(
                f"invalid fusion bm25_query_k3 {k3!r}: expected null or a number "
                f"above 0; {_FIX}"
            )

    @property
    def bm25_weight(self) -> float:
        return 1.0 - self.dense_weight

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> "FusionConfig":
        """Read settings written by :meth:`as_dict`; absent keys take the defaults.

        Raises:
            FusionConfigError: ``data`` is not a mapping, has an unknown key,
                or contains an invalid value.
        """
        if not isinstance(data, Mapping):
            raise FusionConfigError(
                f"invalid fusion settings {data!r}: expected a JSON object with keys "
                f"{sorted(cls.__dataclass_fields__)}; {_FIX}"
            )
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise FusionConfigError(
                f"unknown fusion setting(s) {unknown}: expected only "
                f"{sorted(cls.__dataclass_fields__)}; {_FIX}"
            )
        return cls(**data)

    def describe(self) -> str:
        """Render the settings on one line, as the tuning table shows them."""
        if self.method == "rrf":
            text = f"rrf dense_weight={self.dense_weight:g} rrf_k={self.rrf_k}"
        else:
            text = f"convex dense_weight={self.dense_weight:g}"
        if self.bm25_query_k3 is not None:
            text += f" bm25_query_k3={self.bm25_query_k3:g}"
        return text


def top_rows(scores: np.ndarray, count: int, *, floor: float) -> np.ndarray:
    """Return the positions of the ``count`` highest scores above ``floor``, best first.

    Ties go to the lower position, so a ranking is reproducible.
    """
    if len(scores) > count:
        candidates = np.argpartition(-scores, count - 1)[:count]
    else:
        candidates = np.arange(len(scores))
    candidates = candidates[scores[candidates] > floor]
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order]


def fuse(
    dense: np.ndarray,
    keyword: np.ndarray,
    config: FusionConfig,
    depth: int,
) -> np.ndarray:
    """Return one fused score per position; ``-inf`` marks a position that is no candidate.

    ``dense`` contains cosine similarities (``-inf`` where filtered out) and
    ``keyword`` BM25 scores (0 where no query term occurs). Candidates are the
    top ``depth`` positions of each retriever with a nonzero weight. A
    weight of 0 turns that retriever's ranking off, as search modes
    ``dense`` and ``bm25`` do.
    """
    fused = np.full(len(dense), -np.inf)
    dense_rows = (
        top_rows(dense, depth, floor=-np.inf) if config.dense_weight > 0 else _EMPTY
    )
    keyword_rows = (
        top_rows(keyword, depth, floor=0.0) if config.bm25_weight > 0 else _EMPTY
    )
    if config.method == "rrf":
        fused[dense_rows] = 0.0
        fused[keyword_rows] = 0.0
        ranks = np.arange(1, depth + 1, dtype=np.float64)
        fused[dense_rows] += config.dense_weight / (
            config.rrf_k + ranks[: len(dense_rows)]
        )
        fused[keyword_rows] += config.bm25_weight / (
            config.rrf_k + ranks[: len(keyword_rows)]
        )
        return fused

    rows = np.union1d(dense_rows, keyword_rows)
    if not len(rows):
        return fused
    fused[rows] = config.dense_weight * _min_max(
        dense[rows], floor=None
    ) + config.bm25_weight * _min_max(keyword[rows], floor=0.0)
    return fused


_EMPTY = np.zeros(0, dtype=np.int64)


def _min_max(scores: np.ndarray, *, floor: float | None) -> np.ndarray:
    """Scale ``scores`` to [0, 1] over the candidates.

    BM25 passes ``floor=0`` because a score of 0 means no query term occurs,
    so a lone keyword match still gets weight. A filtered-out chunk
    (``-inf``) maps to 0.
    """
    finite = np.isfinite(scores)
    if not finite.any():
        return np.zeros(len(scores))
    values = np.where(finite, scores, np.nan)
    low = float(np.nanmin(values)) if floor is None else floor
    high = float(np.nanmax(values))
    if high <= low:
        # Every candidate scores the same: all count fully, except BM25
        # candidates that match no query term.
        if floor is None:
            return finite.astype(np.float64)
        return np.where(finite & (scores > low), 1.0, 0.0)
    return np.where(finite, (values - low) / (high - low), 0.0)
