"""The build behind ``build_index``: discover files, diff them against the last
build, chunk and embed what changed, then write a new index atomically."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ingestion.bm25 import B, K1, TOKENIZER_VERSION, BM25Index
from ingestion.chunking import Chunk, ChunkingConfig, chunk_document
from ingestion.embedder import Embedder
from ingestion.errors import (
    DuplicateChunkError,
    IndexFormatError,
    IngestionError,
    UnreadableFileError,
)
from ingestion.fusion import FusionConfig
from ingestion.index import (
    CHUNKS_NAME,
    EMBED_BATCH_SIZE,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    VECTORS_NAME,
    FileReport,
    IngestReport,
    _check_embedder,
    _read_data,
    _read_manifest,
    file_sha256,
    read_fusion,
)
from ingestion.loaders import SUPPORTED_SUFFIXES, RecordFields, load_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _SourceFile:
    key: str
    """Path relative to the source folder, prefixed with that folder's name."""
    path: Path


@dataclass
class _Previous:
    files: dict[str, dict]
    chunks_by_source: dict[str, list[dict]]
    vectors: dict[str, np.ndarray]
    """Vector per chunk id."""
    fusion_entries: dict[str, dict] = field(default_factory=dict)
    """The manifest's ``fusion`` and ``fusion_tuning`` entries, not yet checked."""


def run_build(
    sources: list[Path],
    index_dir: Path,
    embedder: Embedder,
    *,
    progress: bool,
    record_fields: RecordFields,
    chunking: ChunkingConfig,
    fusion: FusionConfig | None = None,
) -> IngestReport:
    started = time.perf_counter()
    files = discover_files(sources, exclude=index_dir)
    previous = _read_previous(index_dir, embedder, chunking)
    # A rebuild keeps fusion settings that were tuned or set on this index,
    # unless the caller passes new ones.
    if fusion is not None:
        fusion_entries = {"fusion": fusion.as_dict()}
    elif previous.fusion_entries:
        fusion_entries = dict(previous.fusion_entries)
        fusion_entries["fusion"] = read_fusion(fusion_entries, index_dir).as_dict()
    else:
        fusion_entries = {"fusion": FusionConfig().as_dict()}
    report = IngestReport(index_dir=index_dir)

    kept_chunks: dict[str, list[dict]] = {}
    new_chunks: dict[str, list[Chunk]] = {}
    file_entries: dict[str, dict] = {}
    statuses: dict[str, tuple[str, str | None]] = {}
    seen_digests: dict[str, str] = {}
    for source in tqdm(files, desc="reading", unit="file", disable=not progress):
        digest = file_sha256(source.path)
        if digest in seen_digests:
            statuses[source.key] = ("skipped", f"same bytes as {seen_digests[digest]}")
            continue
        seen_digests[digest] = source.key
        old = previous.files.get(source.key)
        if old is not None and old["sha256"] == digest:
            kept_chunks[source.key] = previous.chunks_by_source.get(source.key, [])
            file_entries[source.key] = old
            statuses[source.key] = ("unchanged", None)
            continue
        try:
            chunks, notes = _chunk_file(source, record_fields, chunking)
        except UnreadableFileError as exc:
            logger.warning("file skipped path=%s reason=%s", source.key, exc)
            statuses[source.key] = ("skipped", str(exc))
            continue
        except OSError as exc:
            logger.warning("file skipped path=%s reason=%s", source.key, exc)
            statuses[source.key] = ("skipped", f"cannot be read: {exc.strerror or exc}")
            continue
        if not chunks:
            reason = "; ".join(["no text extracted", *notes])
            statuses[source.key] = ("skipped", reason)
            continue
        new_chunks[source.key] = chunks
        file_entries[source.key] = {
            "sha256": digest,
            "size": source.path.stat().st_size,
        }
        status = "updated" if old is not None else "added"
        statuses[source.key] = (status, "; ".join(notes) or None)

    embedded = _embed_chunks(
        [chunk for chunks in new_chunks.values() for chunk in chunks],
        embedder,
        progress,
    )
    records: list[dict] = []
    vectors: list[np.ndarray] = []
    for key in sorted(set(kept_chunks) | set(new_chunks)):
        if key in kept_chunks:
            for record in kept_chunks[key]:
                records.append(record)
                vectors.append(previous.vectors[record["id"]])
        else:
            for chunk in new_chunks[key]:
                records.append(_chunk_record(chunk))
                vectors.append(embedded[chunk.chunk_id])
        file_entries[key]["chunks"] = len(kept_chunks.get(key) or new_chunks[key])

    matrix = (
        np.vstack(vectors).astype(np.float32, copy=False)
        if vectors
        else np.zeros((0, embedder.dimension), dtype=np.float32)
    )
    _write_index(
        index_dir,
        records,
        matrix,
        embedder,
        chunking,
        file_entries,
        fusion_entries=fusion_entries,
    )

    for source in files:
        status, reason = statuses[source.key]
        chunk_count = (
            file_entries[source.key]["chunks"] if source.key in file_entries else 0
        )
        report.files.append(FileReport(source.key, status, reason, chunk_count))
    current = {source.key for source in files}
    for key in sorted(set(previous.files) - current):
        report.files.append(
            FileReport(key, "removed", "no longer under the sources", 0)
        )
    report.chunk_count = len(records)
    report.embedded = len(embedded)
    report.seconds = time.perf_counter() - started
    logger.info(
        "index built dir=%s chunks=%d embedded=%d seconds=%.1f",
        index_dir,
        report.chunk_count,
        report.embedded,
        report.seconds,
    )
    return report


def discover_files(
    sources: list[Path], *, exclude: Path | None = None
) -> list[_SourceFile]:
    """List the files under ``sources`` with their relative keys, sorted by key.

    Hidden files and folders (names starting with ``.``) and anything inside
    ``exclude`` are left out. Files with unsupported extensions are listed,
    so the report can show them as skipped.
    """
    excluded = exclude.resolve() if exclude is not None else None
    found: dict[str, _SourceFile] = {}
    seen_paths: set[Path] = set()
    for source in sources:
        if not source.exists():
            raise FileNotFoundError(f"source {str(source)!r} not found")
        if source.is_file():
            candidates = [(source.name, source)]
        else:
            root = source.resolve()
            candidates = []
            for path in sorted(root.rglob("*")):
                relative = path.relative_to(root)
                if (
                    any(part.startswith(".") for part in relative.parts)
                    or not path.is_file()
                ):
                    continue
                if excluded is not None and path.resolve().is_relative_to(excluded):
                    continue
                candidates.append((f"{root.name}/{relative.as_posix()}", path))
        for key, path in candidates:
            resolved = path.resolve()
            if resolved in seen_paths:
                continue
            if key in found:
                raise IngestionError(
                    f"two sources contain {key!r} ({str(found[key].path)!r} and {str(path)!r}); "
                    "pass their parent folder once instead"
                )
            seen_paths.add(resolved)
            found[key] = _SourceFile(key, path)
    return [found[key] for key in sorted(found)]


def _chunk_file(
    source: _SourceFile, record_fields: RecordFields, chunking: ChunkingConfig
) -> tuple[list[Chunk], list[str]]:
    if source.path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise UnreadableFileError(f"unsupported extension {source.path.suffix!r}")
    loaded = load_file(source.path, record_fields=record_fields)
    chunks: list[Chunk] = []
    for document in loaded.documents:
        chunks.extend(chunk_document(source.key, document, chunking))
    notes = list(loaded.notes)
    unique, duplicates = deduplicate_chunks(chunks)
    if duplicates:
        notes.append(f"{duplicates} duplicate chunk(s) dropped")
    return unique, notes


def deduplicate_chunks(chunks: list[Chunk]) -> tuple[list[Chunk], int]:
    """Drop repeats of a chunk id whose text is identical.

    Raises:
        DuplicateChunkError: one id occurs with different texts, as when two
            records share an id; nothing from the file is indexed then.
    """
    by_id: dict[str, Chunk] = {}
    for chunk in chunks:
        first = by_id.get(chunk.chunk_id)
        if first is None:
            by_id[chunk.chunk_id] = chunk
        elif first.text != chunk.text or first.metadata != chunk.metadata:
            record = chunk.metadata.get("record_id")
            where = (
                f"record id {record!r}"
                if record is not None
                else f"heading {chunk.heading!r}"
            )
            raise DuplicateChunkError(
                f"{where} occurs twice with different content (chunk id {chunk.chunk_id}); "
                "give each record a unique id"
            )
    return list(by_id.values()), len(chunks) - len(by_id)


def _embed_chunks(
    chunks: list[Chunk], embedder: Embedder, progress: bool
) -> dict[str, np.ndarray]:
    vectors: dict[str, np.ndarray] = {}
    if not chunks:
        return vectors
    # Neighbours of similar length share a batch, so the embedder pads little:
    # on the τ-Banking articles, batches of 32 taken from windows of 128
    # unsorted chunks held 1.41 times the real token count, sorted ones 1.02.
    chunks = sorted(chunks, key=lambda chunk: len(chunk.indexed_text()))
    with tqdm(
        total=len(chunks), desc="embedding", unit="chunk", disable=not progress
    ) as bar:
        for start in range(0, len(chunks), EMBED_BATCH_SIZE):
            batch = chunks[start : start + EMBED_BATCH_SIZE]
            matrix = embedder.embed([chunk.indexed_text() for chunk in batch])
            if matrix.shape != (len(batch), embedder.dimension):
                raise IngestionError(
                    f"embedder {embedder.name!r} returned shape {matrix.shape}, "
                    f"expected {(len(batch), embedder.dimension)}"
                )
            for chunk, vector in zip(batch, matrix):
                vectors[chunk.chunk_id] = vector
            bar.update(len(batch))
            bar.set_postfix(batch=len(batch), total=len(vectors))
    return vectors


def _chunk_record(chunk: Chunk) -> dict:
    return {
        "id": chunk.chunk_id,
        "source": chunk.source,
        "title": chunk.title,
        "heading_path": list(chunk.heading_path),
        "text": chunk.text,
        "metadata": chunk.metadata,
    }


def indexed_text(record: dict) -> str:
    """Rebuild :meth:`Chunk.indexed_text` from a stored chunk record."""
    heading = " > ".join(record["heading_path"])
    return "\n".join(
        part for part in (record["title"], heading, record["text"]) if part
    )


def _read_previous(
    index_dir: Path, embedder: Embedder, chunking: ChunkingConfig
) -> _Previous:
    empty = _Previous({}, {}, {})
    if not index_dir.exists():
        return empty
    if not index_dir.is_dir():
        raise IndexFormatError(f"index path {str(index_dir)!r} is a file, not a folder")
    if not (index_dir / MANIFEST_NAME).exists():
        if any(index_dir.iterdir()):
            raise IndexFormatError(
                f"{str(index_dir)!r} is not empty and contains no {MANIFEST_NAME}; "
                "choose an empty or new folder for the index"
            )
        return empty
    manifest = _read_manifest(index_dir)
    _check_embedder(manifest, embedder, index_dir)
    fusion_entries = {
        key: manifest[key] for key in ("fusion", "fusion_tuning") if key in manifest
    }
    if manifest.get("chunking") != chunking.as_dict():
        logger.info(
            "chunking settings changed; re-chunking every file dir=%s", index_dir
        )
        return _Previous({}, {}, {}, fusion_entries)
    chunks, vectors = _read_data(index_dir, manifest)
    by_source: dict[str, list[dict]] = {}
    for record in chunks:
        by_source.setdefault(record["source"], []).append(record)
    return _Previous(
        dict(manifest.get("files", {})),
        by_source,
        {record["id"]: vectors[row] for row, record in enumerate(chunks)},
        fusion_entries,
    )


def save_fusion(
    index_dir: Path, fusion: FusionConfig, *, tuning: dict | None = None
) -> None:
    """Store ``fusion`` in the manifest of the index in ``index_dir``.

    ``tuning`` records how the settings were found (queries, metric, score)
    under ``fusion_tuning``; without it that entry is removed. The manifest
    is replaced with one ``os.replace``, so a reader sees the old settings
    or the new ones.

    Raises:
        IndexFormatError: ``index_dir`` is not an index this package wrote.
    """
    index_dir = Path(index_dir)
    manifest = _read_manifest(index_dir)
    manifest["fusion"] = fusion.as_dict()
    manifest.pop("fusion_tuning", None)
    if tuning is not None:
        manifest["fusion_tuning"] = tuning
    _replace_manifest(index_dir, manifest)


def _write_index(
    index_dir: Path,
    records: list[dict],
    vectors: np.ndarray,
    embedder: Embedder,
    chunking: ChunkingConfig,
    files: dict[str, dict],
    *,
    fusion_entries: dict[str, dict] | None = None,
) -> None:
    """Write a new data folder, then point the manifest at it with one ``os.replace``.

    ``fusion_entries`` contains the manifest's ``fusion`` (and optional
    ``fusion_tuning``) entries; without it the default fusion is stored.
    """
    ids = [record["id"] for record in records]
    if len(set(ids)) != len(ids):
        raise IngestionError("duplicate chunk ids across files; nothing was written")
    index_dir.mkdir(parents=True, exist_ok=True)
    data_name = f"data-{uuid.uuid4().hex[:12]}"
    staging = index_dir / f".tmp-{data_name}"
    staging.mkdir()
    try:
        with open(staging / CHUNKS_NAME, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        np.save(staging / VECTORS_NAME, vectors, allow_pickle=False)
        written = [CHUNKS_NAME, VECTORS_NAME]
        written += BM25Index.build([indexed_text(record) for record in records]).save(
            staging
        )
        for name in written:
            _fsync(staging / name)
        os.rename(staging, index_dir / data_name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "embedder": {"name": embedder.name, "dimension": embedder.dimension},
        "chunk_count": len(records),
        "chunking": chunking.as_dict(),
        "bm25": {"k1": K1, "b": B, "tokenizer_version": TOKENIZER_VERSION},
        "data_dir": data_name,
        "data_files": {
            name: file_sha256(index_dir / data_name / name) for name in written
        },
        "files": files,
        **(fusion_entries or {"fusion": FusionConfig().as_dict()}),
    }
    _replace_manifest(index_dir, manifest)
    # NOTE: a reader that read the old manifest just before the swap can find
    # its data folder gone. It then fails with IndexFormatError and must retry.
    for stale in index_dir.iterdir():
        if (
            stale.name != data_name
            and stale.is_dir()
            and (stale.name.startswith("data-") or stale.name.startswith(".tmp-"))
        ):
            shutil.rmtree(stale, ignore_errors=True)


def _replace_manifest(index_dir: Path, manifest: dict) -> None:
    manifest_tmp = index_dir / f".tmp-{MANIFEST_NAME}"
    manifest_tmp.write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    _fsync(manifest_tmp)
    os.replace(manifest_tmp, index_dir / MANIFEST_NAME)
    _fsync(index_dir)


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
