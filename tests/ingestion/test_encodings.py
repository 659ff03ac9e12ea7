"""Text files in several encodings, with the platform's preferred encoding set to cp1252."""

from __future__ import annotations

import codecs
import locale

import pytest

from ingestion import KnowledgeIndex, build_index
from ingestion.decoding import decode_bytes
from ingestion.errors import UnreadableFileError

UTF8_TEXT = "Our “premium” plan costs €12 — upgrade anytime 🚀"
LATIN1_TEXT = "Le café est fermé le dimanche."
UTF16_TEXT = "Résumé of the naïve coöperative’s policy ✓"


@pytest.fixture
def cp1252_platform(monkeypatch):
    monkeypatch.setattr(
        locale, "getpreferredencoding", lambda do_setlocale=True: "cp1252"
    )
    monkeypatch.setattr(locale, "getencoding", lambda: "cp1252")


@pytest.fixture
def mixed_folder(tmp_path):
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "utf8.txt").write_bytes(UTF8_TEXT.encode("utf-8"))
    (folder / "latin1.txt").write_bytes(LATIN1_TEXT.encode("latin-1"))
    (folder / "utf16.txt").write_bytes(
        codecs.BOM_UTF16_LE + UTF16_TEXT.encode("utf-16-le")
    )
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 4)
    return folder


def test_folder_ingests_all_but_binary(
    mixed_folder, tmp_path, hashing_embedder, cp1252_platform
):
    report = build_index(
        mixed_folder, tmp_path / "index", hashing_embedder, progress=False
    )

    statuses = {entry.path: entry for entry in report.files}
    assert statuses["kb/binary.txt"].status == "skipped"
    assert "looks binary" in statuses["kb/binary.txt"].reason
    assert statuses["kb/utf8.txt"].status == "added"
    assert statuses["kb/utf16.txt"].status == "added"
    assert statuses["kb/latin1.txt"].status == "added"
    assert (
        statuses["kb/latin1.txt"].reason
        == "not valid UTF-8 at byte 6; decoded as Latin-1"
    )


def test_stored_text_is_exact(
    mixed_folder, tmp_path, hashing_embedder, cp1252_platform
):
    build_index(mixed_folder, tmp_path / "index", hashing_embedder, progress=False)
    index = KnowledgeIndex.load(tmp_path / "index", hashing_embedder)

    texts = {}
    for source in ("kb/utf8.txt", "kb/latin1.txt", "kb/utf16.txt"):
        hits = index.search("policy plan café résumé", k=5, filters={"source": source})
        assert len(hits) == 1
        texts[source] = hits[0].text
    assert texts["kb/utf8.txt"] == UTF8_TEXT
    assert texts["kb/latin1.txt"] == LATIN1_TEXT
    assert texts["kb/utf16.txt"] == UTF16_TEXT
    assert all("\ufffd" not in text for text in texts.values())


@pytest.mark.parametrize(
    ("data", "text", "encoding"),
    [
        (UTF8_TEXT.encode("utf-8"), UTF8_TEXT, "utf-8"),
        (codecs.BOM_UTF8 + UTF8_TEXT.encode("utf-8"), UTF8_TEXT, "utf-8-sig"),
        (codecs.BOM_UTF16_BE + UTF16_TEXT.encode("utf-16-be"), UTF16_TEXT, "utf-16"),
        (codecs.BOM_UTF32_LE + UTF16_TEXT.encode("utf-32-le"), UTF16_TEXT, "utf-32"),
        ("“quoted” – dash".encode("cp1252"), "“quoted” – dash", "cp1252"),
        (LATIN1_TEXT.encode("latin-1"), LATIN1_TEXT, "latin-1"),
    ],
)
def test_decode_bytes_round_trips(data, text, encoding):
    decoded = decode_bytes(data)

    assert decoded.text == text
    assert decoded.encoding == encoding


def test_cp1252_undefined_byte_is_rejected():
    with pytest.raises(UnreadableFileError, match="not valid cp1252"):
        decode_bytes(b"price \x81 \x93quoted\x94")


def test_broken_utf16_after_bom_is_rejected():
    with pytest.raises(UnreadableFileError, match="utf-16 byte-order mark"):
        decode_bytes(codecs.BOM_UTF16_LE + b"a\x00\x00\xd8")
