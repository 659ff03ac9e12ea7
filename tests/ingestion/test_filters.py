"""Metadata filters on search."""

from __future__ import annotations

import json

import pytest

from tests.ingestion.conftest import write_pdf
from ingestion import KnowledgeIndex, build_index


@pytest.fixture
def index(tmp_path, hashing_embedder) -> KnowledgeIndex:
    kb = tmp_path / "kb"
    kb.mkdir()
    write_pdf(
        kb / "manual.pdf",
        ["Reset the router by holding the button.", "Router lights explained."],
    )
    (kb / "router.md").write_text(
        "# Router\n\n## Reset\n\nHold the router button for 10 seconds.\n",
        encoding="utf-8",
    )
    tickets = [
        {
            "ticket_id": "T1",
            "subject": "Router dead",
            "body": "My router will not turn on.",
            "priority": "high",
        },
        {
            "ticket_id": "T2",
            "subject": "Router slow",
            "body": "The router is slow at night.",
            "priority": "low",
        },
    ]
    (kb / "tickets.json").write_text(json.dumps(tickets), encoding="utf-8")
    build_index(kb, tmp_path / "index", hashing_embedder, progress=False)
    return KnowledgeIndex.load(tmp_path / "index", hashing_embedder)


def test_filter_by_source(index):
    hits = index.search("router", k=10, filters={"source": "kb/router.md"})

    assert [hit.source for hit in hits] == ["kb/router.md"]
    assert hits[0].heading == "Reset"


def test_filter_by_page(index):
    hits = index.search("router", k=10, filters={"format": "pdf", "page": 2})

    assert len(hits) == 1
    assert hits[0].metadata["page"] == 2


def test_filter_accepts_list_of_values(index):
    hits = index.search("router", k=10, filters={"record_id": ["T1", "T2"]})

    assert sorted(hit.metadata["record_id"] for hit in hits) == ["T1", "T2"]


def test_filter_by_record_field(index):
    hits = index.search("router", k=10, filters={"priority": "high"})

    assert [hit.metadata["ticket_id"] for hit in hits] == ["T1"]
    assert hits[0].title == "Router dead"


def test_filter_by_heading_path_item(index):
    hits = index.search("router", k=10, filters={"heading_path": "Reset"})

    assert [hit.source for hit in hits] == ["kb/router.md"]


def test_filter_matching_nothing_returns_empty(index):
    assert index.search("router", k=10, filters={"source": "kb/absent.md"}) == []


def test_unknown_filter_key_raises(index):
    with pytest.raises(ValueError, match="unknown filter key 'colour'"):
        index.search("router", filters={"colour": "red"})
