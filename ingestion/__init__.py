"""Ingestion and retrieval: load a knowledge base, chunk it, embed it, search it.

Importing this package loads no model; call :func:`load_default_embedder`.
"""

from ingestion.chunking import Chunk, ChunkingConfig
from ingestion.embedder import Embedder, load_default_embedder
from ingestion.errors import (
    DuplicateChunkError,
    EmbedderMismatchError,
    FusionConfigError,
    IndexFormatError,
    IngestionError,
    UnreadableFileError,
)
from ingestion.fusion import FusionConfig
from ingestion.index import FileReport, Hit, IngestReport, KnowledgeIndex, build_index
from ingestion.loaders import RecordFields
from ingestion.reranking import CrossEncoderReranker, EmbedderReranker, Reranker

__all__ = [
    "Chunk",
    "ChunkingConfig",
    "CrossEncoderReranker",
    "DuplicateChunkError",
    "Embedder",
    "EmbedderMismatchError",
    "EmbedderReranker",
    "FileReport",
    "FusionConfig",
    "FusionConfigError",
    "Hit",
    "IndexFormatError",
    "IngestReport",
    "IngestionError",
    "KnowledgeIndex",
    "RecordFields",
    "Reranker",
    "UnreadableFileError",
    "build_index",
    "load_default_embedder",
]
