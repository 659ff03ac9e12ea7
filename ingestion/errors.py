"""Errors raised by ingestion and retrieval, each naming the value at fault."""

from __future__ import annotations


class IngestionError(Exception):
    """Base class for every error this package raises on purpose."""


class UnreadableFileError(IngestionError, ValueError):
    """A source file could not be decoded or parsed; other files are unaffected."""


class DuplicateChunkError(UnreadableFileError):
    """Two chunks of one file got the same id but different content."""


class IndexFormatError(IngestionError, ValueError):
    """A folder is not an index this package wrote, or its files are damaged."""


class EmbedderMismatchError(IngestionError, ValueError):
    """An index was built with a different embedding model than the one given."""


class FusionConfigError(IngestionError, ValueError):
    """Hybrid fusion settings are invalid, whether in a manifest or given in code."""
