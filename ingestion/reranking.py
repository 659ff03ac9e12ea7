"""Optional reranking of fused hits: the interface, and two implementations.

A reranker scores (query, chunk text) pairs after fusion and reorders the top
candidates. ``CrossEncoderReranker`` loads a sentence-transformers
cross-encoder from a folder the user provides; none is bundled, because no
registry package ships one, and nothing is downloaded. ``EmbedderReranker``
rescores candidates by cosine similarity with any ``Embedder``, which needs no
extra model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ingestion.embedder import Embedder

DEFAULT_RERANK_DEPTH = 20
"""Fused candidates that a reranker scores per query."""


@runtime_checkable
class Reranker(Protocol):
    """Scores chunk texts against a query; higher is more relevant."""

    name: str

    def score(self, query: str, texts: Sequence[str]) -> Sequence[float]:
        """Return one finite score per text, in the order of ``texts``."""
        ...


class CrossEncoderReranker:
    """A sentence-transformers cross-encoder loaded from a local folder, CPU only.

    NOTE: no test loads a real cross-encoder, because none is available
    offline; only the missing-folder error is tested.
    """

    def __init__(self, model_dir: Path, *, batch_size: int = 16) -> None:
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"no cross-encoder model in {str(model_dir)!r}: config.json is missing; "
                "copy a sentence-transformers cross-encoder folder there first "
                "(Warden downloads no models)"
            )
        # huggingface_hub reads these when it is first imported, so set them first.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        from sentence_transformers import CrossEncoder

        self._model = CrossEncoder(str(model_dir), device="cpu", local_files_only=True)
        self._batch_size = batch_size
        self.name = f"cross-encoder:{model_dir.name}"

    def score(self, query: str, texts: Sequence[str]) -> Sequence[float]:
        scores = self._model.predict(
            [(query, text) for text in texts],
            batch_size=self._batch_size,
            show_progress_bar=False,
        )
        return [float(value) for value in np.asarray(scores).reshape(-1)]


class EmbedderReranker:
    """Rescores candidates by the cosine similarity of query and chunk embeddings."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self.name = f"embedder:{embedder.name}"

    def score(self, query: str, texts: Sequence[str]) -> Sequence[float]:
        vectors = self._embedder.embed([query, *texts])
        return [float(value) for value in vectors[1:] @ vectors[0]]


def checked_scores(reranker: Reranker, scores: Sequence[float], expected: int) -> list[float]:
    """Return ``scores`` as floats, or raise ``ValueError`` naming the reranker's fault."""
    values = [float(value) for value in scores]
    if len(values) != expected:
        raise ValueError(
            f"reranker {reranker.name!r} returned {len(values)} scores for {expected} "
            "texts; it must return one score per text"
        )
    bad = [value for value in values if not math.isfinite(value)]
    if bad:
        raise ValueError(
            f"reranker {reranker.name!r} returned non-finite scores {bad[:3]}; "
            "it must return finite numbers"
        )
    return values
