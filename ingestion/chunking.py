"""Section-aware chunking with deterministic chunk ids.

A chunk never crosses a heading or a PDF page. Its id depends only on the
source's relative path, the record id, the heading path and the chunk's
position under that heading path, so re-ingesting an unchanged file yields the
same ids.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field

from ingestion.loaders import Document

# About 200 MiniLM word pieces of English prose, below the model's 256-token
# window, so the tail of a chunk is not truncated away when it is embedded.
DEFAULT_MAX_CHARS = 1000
CHUNKER_VERSION = 1

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class ChunkingConfig:
    max_chars: int = DEFAULT_MAX_CHARS

    def as_dict(self) -> dict[str, int]:
        return {"version": CHUNKER_VERSION, "max_chars": self.max_chars}


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    source: str
    """Path of the source file relative to the folder it was ingested from."""
    title: str
    heading_path: tuple[str, ...]
    text: str
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def heading(self) -> str:
        return " > ".join(self.heading_path)

    def indexed_text(self) -> str:
        """Return the text that is embedded and keyword-indexed: title, headings, body."""
        parts = [self.title, self.heading, self.text]
        return "\n".join(part for part in parts if part)


def make_chunk_id(
    source: str, record_id: str | None, heading_path: tuple[str, ...], ordinal: int
) -> str:
    """Hash the chunk's position into a 20-hex-digit id, stable across runs."""
    key = "\x1f".join(
        [source, record_id or "", "\x1e".join(heading_path), str(ordinal)]
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]


def chunk_document(
    source: str, document: Document, config: ChunkingConfig = ChunkingConfig()
) -> list[Chunk]:
    """Split a document's sections into chunks of at most ``config.max_chars``."""
    ordinals: defaultdict[tuple[str, ...], int] = defaultdict(int)
    chunks = []
    for section in document.sections:
        for text in split_text(section.text, config.max_chars):
            ordinal = ordinals[section.heading_path]
            ordinals[section.heading_path] += 1
            metadata = {
                **document.metadata,
                **section.metadata,
                "source": source,
                "title": document.title,
                "heading_path": list(section.heading_path),
            }
            chunks.append(
                Chunk(
                    make_chunk_id(
                        source, document.record_id, section.heading_path, ordinal
                    ),
                    source,
                    document.title,
                    section.heading_path,
                    text,
                    metadata,
                )
            )
    return chunks


def split_text(text: str, max_chars: int) -> list[str]:
    """Pack paragraphs into pieces of at most ``max_chars``, splitting long ones by sentence."""
    pieces: list[str] = []
    current = ""
    for paragraph in _PARAGRAPH_BREAK.split(text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        for unit in _split_long(paragraph, max_chars):
            if current and len(current) + 2 + len(unit) > max_chars:
                pieces.append(current)
                current = unit
            else:
                current = f"{current}\n\n{unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces


def _split_long(paragraph: str, max_chars: int) -> list[str]:
    if len(paragraph) <= max_chars:
        return [paragraph]
    units: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(paragraph):
        for part in _split_words(sentence, max_chars):
            if current and len(current) + 1 + len(part) > max_chars:
                units.append(current)
                current = part
            else:
                current = f"{current} {part}" if current else part
    if current:
        units.append(current)
    return units


def _split_words(sentence: str, max_chars: int) -> list[str]:
    """Cut a sentence longer than ``max_chars`` at whitespace, or hard if it has none."""
    parts = []
    while len(sentence) > max_chars:
        cut = sentence.rfind(" ", 0, max_chars + 1)
        if cut <= 0:
            cut = max_chars
        parts.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    if sentence:
        parts.append(sentence)
    return parts
