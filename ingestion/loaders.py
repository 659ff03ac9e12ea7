"""Source loaders: turn one file into titled documents made of heading-scoped sections.

Each loader is pure apart from reading the file's bytes; the chunker and the
index never see file formats.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from ingestion.decoding import DecodedText, decode_bytes
from ingestion.errors import UnreadableFileError

logger = logging.getLogger(__name__)

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdx"})
TEXT_SUFFIXES = frozenset({".txt", ".text", ".rst"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
PDF_SUFFIXES = frozenset({".pdf"})
RECORD_SUFFIXES = frozenset({".json", ".jsonl", ".csv"})
SUPPORTED_SUFFIXES = (
    MARKDOWN_SUFFIXES | TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES | RECORD_SUFFIXES
)

_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path."""

    text: str
    heading_path: tuple[str, ...] = ()
    metadata: Mapping[str, object] = field(default_factory=dict)
    """Section-level fields such as ``page`` for PDF pages."""


@dataclass(frozen=True)
class Document:
    """One titled unit of a source file: the whole file, or one record in it."""

    title: str
    sections: list[Section]
    metadata: dict[str, object] = field(default_factory=dict)
    record_id: str | None = None
    """Record identifier for JSON and CSV sources; part of every chunk id."""


@dataclass(frozen=True)
class LoadedFile:
    documents: list[Document]
    notes: list[str] = field(default_factory=list)
    """Facts for the ingest report, such as a fallback encoding or skipped pages."""


@dataclass(frozen=True)
class RecordFields:
    """Field names to read from JSON and CSV records; the first present one wins."""

    text: tuple[str, ...] = ("content", "text", "body", "answer", "description")
    title: tuple[str, ...] = ("title", "question", "subject", "name")
    id: tuple[str, ...] = ("id", "doc_id", "article_id", "ticket_id")


def load_file(path: Path, *, record_fields: RecordFields | None = None) -> LoadedFile:
    """Read one source file and split it into documents and sections.

    Raises:
        UnreadableFileError: the file cannot be decoded or parsed, or its
            extension is not supported.
    """
    suffix = path.suffix.lower()
    data = path.read_bytes()
    if suffix in PDF_SUFFIXES:
        return _load_pdf(path, data)
    decoded = decode_bytes(data)
    notes = [decoded.note] if decoded.note else []
    if suffix in MARKDOWN_SUFFIXES:
        documents = [
            _markdown_document(decoded.text, path.stem, {"format": "markdown"})
        ]
    elif suffix in TEXT_SUFFIXES:
        documents = [Document(path.stem, [Section(decoded.text)], {"format": "text"})]
    elif suffix in HTML_SUFFIXES:
        documents = [_html_document(decoded.text, path.stem)]
    elif suffix in RECORD_SUFFIXES:
        documents, record_notes = _load_records(
            decoded, suffix, path.stem, record_fields or RecordFields()
        )
        notes.extend(record_notes)
    else:
        raise UnreadableFileError(
            f"unsupported extension {suffix!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}"
        )
    return LoadedFile(documents, notes)


def parse_markdown_sections(text: str) -> tuple[str | None, list[Section]]:
    """Split Markdown into sections at ATX and setext headings outside code fences.

    Returns the text of a leading level-1 heading, which becomes the document
    title and is left out of the heading paths below it, and the sections.
    """
    title: str | None = None
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []
    buffer: list[str] = []
    fence: str | None = None
    seen_heading = False

    def flush() -> None:
        body = "\n".join(buffer).strip()
        if body:
            sections.append(Section(body, tuple(name for _, name in stack)))
        buffer.clear()

    def open_heading(level: int, name: str) -> None:
        nonlocal title, seen_heading
        flush()
        if not seen_heading and level == 1 and not sections:
            title = name
        else:
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, name))
        seen_heading = True

    for line in text.splitlines():
        fence_match = _FENCE.match(line)
        if fence is not None:
            buffer.append(line)
            if fence_match and fence_match.group(1)[0] == fence[0]:
                fence = None
            continue
        if fence_match:
            fence = fence_match.group(1)
            buffer.append(line)
            continue
        heading = _ATX_HEADING.match(line)
        if heading:
            open_heading(len(heading.group(1)), heading.group(2).strip())
            continue
        underline = _SETEXT_UNDERLINE.match(line)
        # A setext heading is one text line directly under a blank line or
        # another heading; anything else with "---" is a rule or table border.
        if (
            underline
            and buffer
            and buffer[-1].strip()
            and (len(buffer) == 1 or not buffer[-2].strip())
        ):
            name = buffer.pop().strip()
            open_heading(1 if underline.group(1)[0] == "=" else 2, name)
            continue
        buffer.append(line)
    flush()
    return title, sections


def _markdown_document(text: str, fallback_title: str, metadata: dict) -> Document:
    title, sections = parse_markdown_sections(text)
    return Document(title or fallback_title, sections, metadata)


class _HtmlSectionParser(HTMLParser):
    """Collect visible text into sections split at ``h1``-``h6`` elements."""

    _SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    _BLOCKS = frozenset(
        {
            "p",
            "div",
            "br",
            "li",
            "ul",
            "ol",
            "tr",
            "table",
            "section",
            "article",
            "main",
            "header",
            "footer",
            "pre",
            "blockquote",
            "dd",
            "dt",
            "dl",
            "hr",
            "form",
            "figure",
            "figcaption",
            "aside",
            "nav",
        }
    )
    _HEADINGS = {f"h{level}": level for level in range(1, 7)}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.sections: list[Section] = []
        self._stack: list[tuple[int, str]] = []
        self._parts: list[str] = []
        self._heading_parts: list[str] | None = None
        self._heading_level = 0
        self._skip_depth = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIPPED:
            self._skip_depth += 1
        elif tag in self._HEADINGS and self._skip_depth == 0:
            self._flush()
            self._heading_parts = []
            self._heading_level = self._HEADINGS[tag]
        elif tag in self._BLOCKS:
            self._parts.append("\n\n" if tag not in {"br", "li", "tr"} else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIPPED:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in self._HEADINGS and self._heading_parts is not None:
            name = " ".join("".join(self._heading_parts).split())
            self._heading_parts = None
            if name:
                while self._stack and self._stack[-1][0] >= self._heading_level:
                    self._stack.pop()
                self._stack.append((self._heading_level, name))
        elif tag in self._BLOCKS:
            self._parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif self._skip_depth:
            return
        elif self._heading_parts is not None:
            self._heading_parts.append(data)
        else:
            self._parts.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        raw = "".join(self._parts)
        self._parts.clear()
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", raw)]
        body = "\n\n".join(p for p in paragraphs if p)
        if body:
            heading_path = tuple(name for _, name in self._stack)
            self.sections.append(Section(body, heading_path))


def _html_document(text: str, fallback_title: str) -> Document:
    parser = _HtmlSectionParser()
    parser.feed(text)
    parser.close()
    title = " ".join(parser.title.split()) or fallback_title
    return Document(title, parser.sections, {"format": "html"})


def _load_pdf(path: Path, data: bytes) -> LoadedFile:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableFileError("is an encrypted PDF that needs a password")
        sections = []
        blank_pages = []
        for number, page in enumerate(reader.pages, start=1):
            text = (page.extract_text() or "").strip()
            if text:
                sections.append(Section(text, (), {"page": number}))
            else:
                blank_pages.append(number)
        title = (reader.metadata.title if reader.metadata else None) or path.stem
    except (PdfReadError, ValueError, KeyError) as exc:
        if isinstance(exc, UnreadableFileError):
            raise
        raise UnreadableFileError(f"is not a readable PDF: {exc}") from None
    notes = []
    if blank_pages:
        notes.append(
            f"no text on page(s) {_format_pages(blank_pages)} of {len(reader.pages)}"
            " (blank or image-only; OCR is not supported)"
        )
    return LoadedFile([Document(str(title), sections, {"format": "pdf"})], notes)


def _format_pages(pages: list[int]) -> str:
    if len(pages) > 10:
        return ", ".join(map(str, pages[:10])) + f" and {len(pages) - 10} more"
    return ", ".join(map(str, pages))


def _load_records(
    decoded: DecodedText, suffix: str, stem: str, fields: RecordFields
) -> tuple[list[Document], list[str]]:
    rows = list(_iter_records(decoded.text, suffix))
    if not rows:
        return [], []
    text_field = _pick_field(rows, fields.text)
    if text_field is None:
        raise UnreadableFileError(
            f"records have none of the text fields {list(fields.text)}; "
            "name the field that holds the text (--text-field)"
        )
    title_field = _pick_field(rows, fields.title)
    id_field = _pick_field(rows, fields.id)
    documents = []
    missing_text = 0
    for position, (key, row) in enumerate(rows):
        body = _field_text(row.get(text_field))
        if not body.strip():
            missing_text += 1
            continue
        record_id = _field_text(row.get(id_field)) if id_field else ""
        record_id = record_id or key or str(position)
        title = _field_text(row.get(title_field)) if title_field else ""
        metadata: dict[str, object] = {
            name: value
            for name, value in row.items()
            if name not in {text_field, title_field}
            and isinstance(value, (str, int, float, bool))
        }
        metadata["format"] = suffix.lstrip(".")
        metadata["record_id"] = record_id
        heading_title, sections = parse_markdown_sections(body)
        documents.append(
            Document(
                title or heading_title or f"{stem} {record_id}",
                sections,
                metadata,
                record_id,
            )
        )
    notes = (
        [f"{missing_text} record(s) without text in {text_field!r}"]
        if missing_text
        else []
    )
    return documents, notes


def _iter_records(text: str, suffix: str) -> Iterator[tuple[str | None, dict]]:
    """Yield ``(key, record)``; ``key`` is the object key for dict-of-records JSON."""
    if suffix == ".csv":
        try:
            yield from ((None, row) for row in csv.DictReader(io.StringIO(text)))
        except csv.Error as exc:
            raise UnreadableFileError(f"is not valid CSV: {exc}") from None
        return
    try:
        if suffix == ".jsonl":
            values = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableFileError(
            f"is not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if isinstance(values, dict):
        if values and all(isinstance(v, dict) for v in values.values()):
            yield from values.items()
            return
        values = [values]
    if not isinstance(values, list):
        raise UnreadableFileError(
            f"JSON must be an object, a list of objects or a dict of objects, "
            f"got {type(values).__name__}"
        )
    for position, value in enumerate(values):
        if not isinstance(value, dict):
            raise UnreadableFileError(
                f"record {position} is a {type(value).__name__}, expected an object"
            )
        yield None, value


def _pick_field(
    rows: list[tuple[str | None, dict]], candidates: tuple[str, ...]
) -> str | None:
    for name in candidates:
        if any(name in row for _, row in rows):
            return name
    return None


def _field_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n\n".join(_field_text(item) for item in value if item is not None)
    return str(value)
