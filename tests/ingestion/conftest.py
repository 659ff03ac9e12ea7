"""Fixtures for ingestion tests: a fast hashing embedder, the real MiniLM in int8 and float32, PDF files."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from ingestion.embedder import Embedder, load_default_embedder, load_float32_embedder

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def run_ingestion_cli(*args: str) -> subprocess.CompletedProcess:
    """Run ``python -m ingestion`` with ``args`` in a new process and return its result."""
    return subprocess.run(
        [sys.executable, "-m", "ingestion", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


class HashingEmbedder:
    """Deterministic bag-of-words vectors; texts sharing words get similar vectors."""

    def __init__(self, dimension: int = 64, name: str = "test-hashing") -> None:
        self.dimension = dimension
        self.name = f"{name}-{dimension}"

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
                vectors[row, int.from_bytes(digest, "little") % self.dimension] += 1.0
            norm = np.linalg.norm(vectors[row])
            vectors[row] = vectors[row] / norm if norm else vectors[row]
            if not norm:
                vectors[row, 0] = 1.0
        return vectors


@pytest.fixture
def hashing_embedder() -> Embedder:
    return HashingEmbedder()


@pytest.fixture(scope="session")
def minilm() -> Embedder:
    return load_default_embedder()


@pytest.fixture(scope="session")
def minilm_float32() -> Embedder:
    return load_float32_embedder()


def _pdf_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_pdf(
    path: Path, pages: list[str | None], *, image_pages: frozenset[int] = frozenset()
) -> Path:
    """Write a PDF with one page per entry: text lines, or nothing for ``None``.

    Pages whose 0-based index is in ``image_pages`` get a small drawn image
    and no text, like a scan.
    """
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")
    page_tree = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    page_ids = []
    for index, text in enumerate(pages):
        operations = []
        if index in image_pages:
            pixels = zlib.compress(bytes(range(0, 192)) * 4)
            image = add(
                b"<< /Type /XObject /Subtype /Image /Width 16 /Height 16 /ColorSpace /DeviceRGB "
                b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n"
                % len(pixels)
                + pixels
                + b"\nendstream"
            )
            operations.append("q 200 0 0 200 72 500 cm /Im1 Do Q")
            resources = (
                f"<< /Font << /F1 {font} 0 R >> /XObject << /Im1 {image} 0 R >> >>"
            )
        else:
            resources = f"<< /Font << /F1 {font} 0 R >> >>"
        if text:
            operations.append("BT /F1 12 Tf 14 TL 72 720 Td")
            for line in text.splitlines():
                operations.append(f"({_pdf_string(line)}) Tj T*")
            operations.append("ET")
        stream = "\n".join(operations).encode("latin-1")
        content = add(
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
        )
        page_ids.append(
            add(
                f"<< /Type /Page /Parent {page_tree} 0 R /MediaBox [0 0 612 792] "
                f"/Resources {resources} /Contents {content} 0 R >>".encode()
            )
        )
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {page_tree} 0 R >>".encode()
    kids = " ".join(f"{page} 0 R" for page in page_ids)
    objects[page_tree - 1] = (
        f"<< /Type /Pages /Kids [{kids}] /Count {len(page_ids)} >>".encode()
    )

    output = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(output))
        output += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(output)
    output += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        output += b"%010d 00000 n \n" % offset
    output += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        catalog,
        xref,
    )
    path.write_bytes(bytes(output))
    return path
