"""Loaders and chunking: headings, records, HTML, PDF pages and chunk ids."""

from __future__ import annotations

import json

import pytest

from tests.ingestion.conftest import write_pdf
from ingestion.chunking import ChunkingConfig, chunk_document, make_chunk_id, split_text
from ingestion.errors import UnreadableFileError
from ingestion.loaders import RecordFields, load_file, parse_markdown_sections

MARKDOWN = """# Store policy

Intro paragraph.

## Returns

Within 30 days.

### Exceptions

Final sale items.

```python
# not a heading
```

Shipping
--------

Two days.
"""


def test_markdown_heading_paths():
    title, sections = parse_markdown_sections(MARKDOWN)

    assert title == "Store policy"
    paths = [section.heading_path for section in sections]
    assert paths == [(), ("Returns",), ("Returns", "Exceptions"), ("Shipping",)]
    assert "# not a heading" in sections[2].text


def test_html_sections_skip_scripts(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Help &amp; FAQ</title><script>var x = 1;</script></head>"
        "<body><h1>Orders</h1><p>Track an order.</p><h2>Cancel</h2><p>Cancel a pending order.</p>"
        "<style>p {}</style></body></html>",
        encoding="utf-8",
    )

    document = load_file(path).documents[0]

    assert document.title == "Help & FAQ"
    assert [(s.heading_path, s.text) for s in document.sections] == [
        (("Orders",), "Track an order."),
        (("Orders", "Cancel"), "Cancel a pending order."),
    ]


def test_json_dict_of_records_uses_keys_as_ids(tmp_path):
    path = tmp_path / "articles.json"
    path.write_text(
        json.dumps(
            {
                "k1": {"title": "A", "text": "alpha"},
                "k2": {"title": "B", "text": "beta"},
            }
        ),
        encoding="utf-8",
    )

    documents = load_file(path).documents

    assert [d.record_id for d in documents] == ["k1", "k2"]
    assert [d.title for d in documents] == ["A", "B"]


def test_single_json_object_is_one_record(tmp_path):
    path = tmp_path / "doc_001.json"
    path.write_text(
        json.dumps(
            {"id": "doc_001", "title": "Fees", "content": "## Monthly\n\n$5 a month."}
        ),
        encoding="utf-8",
    )

    document = load_file(path).documents[0]

    assert document.record_id == "doc_001"
    assert document.sections[0].heading_path == ("Monthly",)


def test_csv_records_with_custom_fields(tmp_path):
    path = tmp_path / "tickets.csv"
    path.write_text(
        "number,summary,details\n7,Late parcel,Parcel is 3 days late\n8,Empty,\n",
        encoding="utf-8",
    )
    fields = RecordFields(text=("details",), title=("summary",), id=("number",))

    loaded = load_file(path, record_fields=fields)

    assert [(d.record_id, d.title) for d in loaded.documents] == [("7", "Late parcel")]
    assert loaded.notes == ["1 record(s) without text in 'details'"]


def test_records_without_text_field_are_rejected(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"name": "x", "value": 1}]), encoding="utf-8")

    with pytest.raises(UnreadableFileError, match="none of the text fields"):
        load_file(path)


def test_invalid_json_is_rejected(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"id": 1,', encoding="utf-8")

    with pytest.raises(UnreadableFileError, match="not valid JSON at line 1"):
        load_file(path)


def test_pdf_sections_carry_page_numbers(tmp_path):
    path = write_pdf(tmp_path / "guide.pdf", ["First page.", None, "Third page."])

    loaded = load_file(path)

    assert [s.metadata["page"] for s in loaded.documents[0].sections] == [1, 3]
    assert loaded.notes == [
        "no text on page(s) 2 of 3 (blank or image-only; OCR is not supported)"
    ]


def test_damaged_pdf_is_rejected(tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\nthis is not a pdf body")

    with pytest.raises(UnreadableFileError, match="not a readable PDF"):
        load_file(path)


def test_chunk_ids_depend_on_position_only():
    title, sections = parse_markdown_sections(MARKDOWN)
    from ingestion.loaders import Document

    document = Document(title, sections)
    first = [c.chunk_id for c in chunk_document("kb/policy.md", document)]
    again = [c.chunk_id for c in chunk_document("kb/policy.md", document)]
    moved = [c.chunk_id for c in chunk_document("kb/other.md", document)]

    assert first == again
    assert len(set(first)) == len(first)
    assert not set(first) & set(moved)
    assert first[1] == make_chunk_id("kb/policy.md", None, ("Returns",), 0)


def test_split_text_respects_max_chars():
    text = "\n\n".join(
        ["Sentence number one is here. " * 20, "Short paragraph.", "x" * 2500]
    )

    pieces = split_text(text, 400)

    assert all(len(piece) <= 400 for piece in pieces)
    assert "".join(pieces).replace(" ", "").replace("\n", "") == text.replace(
        " ", ""
    ).replace("\n", "")


def test_long_section_chunks_keep_heading(tmp_path):
    title, sections = parse_markdown_sections(
        "# T\n\n## Big\n\n" + "A sentence of text. " * 200
    )
    from ingestion.loaders import Document

    chunks = chunk_document(
        "kb/t.md", Document(title, sections), ChunkingConfig(max_chars=500)
    )

    assert len(chunks) > 5
    assert {chunk.heading for chunk in chunks} == {"Big"}
