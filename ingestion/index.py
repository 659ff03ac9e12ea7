"""The knowledge index: hybrid dense + BM25 retrieval and its incremental, atomic build.

On disk an index is a folder containing ``manifest.json`` and one
``data-<id>`` folder of JSON and ``.npy`` files. A build writes a new data
folder and then swaps the manifest with ``os.replace``. A reader therefore
sees either the old index or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from ingestion.bm25 import BM25Index
from ingestion.chunking import ChunkingConfig, split_text
from ingestion.embedder import Embedder
from ingestion.errors import EmbedderMismatchError, FusionConfigError, IndexFormatError
from ingestion.fusion import FusionConfig, fuse, top_rows
from ingestion.loaders import RecordFields
from ingestion.reranking import DEFAULT_RERANK_DEPTH, Reranker, checked_scores

logger = logging.getLogger(__name__)

FORMAT_NAME = "warden-knowledge-index"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
CHUNKS_NAME = "chunks.jsonl"
VECTORS_NAME = "vectors.npy"
EMBED_BATCH_SIZE = 128
_DATA_DIR_PATTERN = re.compile(r"^data-[0-9a-f]{12}$")
_NO_ROWS = np.zeros(0, dtype=np.int64)

# A chunk that shares no keyword with the query must be at least this close in
# cosine similarity to count as relevant; MiniLM puts unrelated sentences
# mostly below 0.15.
MIN_DENSE_SIMILARITY = 0.2
# Long queries are embedded in pieces of this many characters; 600 beat 300
# and single-vector truncation on the τ-Banking dev tasks.
QUERY_PIECE_CHARS = 600

RetrievalMode = Literal["hybrid", "dense", "bm25"]
# Dense share of the fusion per search mode; ``None`` keeps the index's setting.
_MODE_DENSE_WEIGHT: dict[str, float | None] = {
    "hybrid": None,
    "dense": 1.0,
    "bm25": 0.0,
}
FileStatus = Literal["added", "updated", "unchanged", "removed", "skipped"]


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    source: str
    """Source file path relative to the folder it was ingested from."""
    title: str
    heading: str
    """Heading path joined with `` > ``; empty for text before any heading."""
    text: str
    score: float
    """Fused score (see :class:`FusionConfig`), or the reranker's score when one
    reordered the hits; higher is better, comparable within one query."""
    metadata: dict


@dataclass(frozen=True)
class FileReport:
    path: str
    status: FileStatus
    reason: str | None
    chunks: int
    """Chunks this file has in the index after the build."""


@dataclass
class IngestReport:
    index_dir: Path
    files: list[FileReport] = field(default_factory=list)
    chunk_count: int = 0
    """Chunks in the index after the build."""
    embedded: int = 0
    """Chunks embedded in this build; unchanged files reuse their vectors."""
    seconds: float = 0.0

    @property
    def totals(self) -> dict[str, int]:
        counts = {
            status: 0
            for status in ("added", "updated", "unchanged", "removed", "skipped")
        }
        for entry in self.files:
            counts[entry.status] += 1
        return counts

    def format(self) -> str:
        """Render the per-file table and the totals as plain text."""
        width = max([len(entry.path) for entry in self.files] + [4])
        lines = [f"{'file':<{width}}  {'status':<9}  {'chunks':>6}  reason"]
        for entry in self.files:
            lines.append(
                f"{entry.path:<{width}}  {entry.status:<9}  {entry.chunks:>6}  {entry.reason or ''}"
            )
        totals = ", ".join(f"{count} {status}" for status, count in self.totals.items())
        rate = self.embedded / self.seconds if self.seconds else 0.0
        lines.append(
            f"{totals}; {self.chunk_count} chunks in {self.index_dir}; "
            f"{self.embedded} embedded in {self.seconds:.1f} s ({rate:.0f} chunks/s)"
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class Candidates:
    """Both retrievers' scores for one query, for the chunks either ranks in its top ``depth``.

    Fusing these gives the same ranking as fusing the scores of every chunk,
    as long as no retriever contributes more than ``depth`` chunks. So a
    tuner can score each query once and try many fusion settings on it.
    """

    rows: np.ndarray
    """Chunk positions in the index, ascending."""
    dense: np.ndarray
    """Cosine similarity per row; ``-inf`` where a filter excludes the chunk."""
    keyword: np.ndarray
    """BM25 score per row; 0 where no query term occurs."""
    depth: int
    bm25_query_k3: float | None = None
    """Query-term saturation the BM25 scores were computed with."""


class KnowledgeIndex:
    """An immutable, loaded index; build or update one with :func:`build_index`."""

    def __init__(
        self,
        chunks: list[dict],
        vectors: np.ndarray,
        bm25: BM25Index,
        embedder: Embedder,
        *,
        min_dense_similarity: float = MIN_DENSE_SIMILARITY,
        fusion: FusionConfig | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        if len(chunks) != len(vectors) or len(chunks) != bm25.size:
            raise IndexFormatError(
                f"index parts disagree: {len(chunks)} chunks, {len(vectors)} vectors, "
                f"{bm25.size} BM25 rows; rebuild the index"
            )
        import torch

        self.reranker = reranker
        """Reranker that ``search`` uses unless a call passes its own; None for none."""
        self._chunks = chunks
        self._vectors = vectors if vectors.flags.writeable else vectors.copy()
        # The dense mat-vec runs in torch, not NumPy: OpenBLAS worker threads
        # keep spinning after a NumPy product and slowed the next MiniLM call
        # 2-10x on 2 cores (100k chunks, p95 search 100-260 ms, 14 ms in torch).
        self._torch_vectors = torch.from_numpy(self._vectors)
        self._bm25 = bm25
        self._embedder = embedder
        self.min_dense_similarity = min_dense_similarity
        self._fusion = fusion or FusionConfig()
        self._value_rows: dict[str, dict[object, np.ndarray]] = {}

    @classmethod
    def load(
        cls,
        index_dir: Path,
        embedder: Embedder,
        *,
        fusion: FusionConfig | None = None,
        reranker: Reranker | None = None,
    ) -> "KnowledgeIndex":
        """Open an index folder written by :func:`build_index`.

        Hybrid search uses ``fusion`` if given, else the ``fusion`` entry of
        the manifest, else :class:`FusionConfig` defaults. ``reranker``, if
        given, reorders the top fused hits of every search.

        Raises:
            IndexFormatError: the folder has no manifest of this format, or a
                data file is missing, damaged or of the wrong shape.
            EmbedderMismatchError: ``embedder`` differs in name or dimension
                from the one that built the index.
            FusionConfigError: the manifest's ``fusion`` entry is invalid and
                no ``fusion`` argument replaces it.
        """
        index_dir = Path(index_dir)
        manifest = _read_manifest(index_dir)
        _check_embedder(manifest, embedder, index_dir)
        if fusion is None:
            fusion = read_fusion(manifest, index_dir)
        chunks, vectors = _read_data(index_dir, manifest)
        bm25 = BM25Index.load(index_dir / manifest["data_dir"])
        logger.info(
            "index loaded dir=%s chunks=%d fusion=%r",
            index_dir,
            len(chunks),
            fusion.describe(),
        )
        return cls(chunks, vectors, bm25, embedder, fusion=fusion, reranker=reranker)

    def __len__(self) -> int:
        return len(self._chunks)

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    @property
    def fusion(self) -> FusionConfig:
        """Fusion settings that ``search`` uses unless a call passes its own."""
        return self._fusion

    def search(
        self,
        query: str,
        k: int = 4,
        *,
        filters: dict | None = None,
        mmr_lambda: float | None = None,
        mode: RetrievalMode = "hybrid",
        fusion: FusionConfig | None = None,
        reranker: Reranker | None = None,
        rerank_depth: int = DEFAULT_RERANK_DEPTH,
    ) -> list[Hit]:
        """Return up to ``k`` chunks ranked by the fusion of dense and BM25 retrieval.

        The fusion follows ``fusion`` if given, else the index's settings
        (:attr:`fusion`). Modes ``dense`` and ``bm25`` rank by one retriever
        alone. ``filters`` maps a metadata key (``source``, ``format``,
        ``page``, ``record_id``, ``title`` or a record field) to a value or a
        list of accepted values. A chunk must match every key. A chunk is
        returned only if it shares a keyword with the query or its cosine
        similarity is at least ``min_dense_similarity``, so an unrelated query
        can return fewer than ``k`` hits or none.

        With ``mmr_lambda`` set, the hits are re-picked by maximal marginal
        relevance from the fused candidates: 1.0 ranks by relevance only,
        lower values penalise chunks similar to ones already picked.

        With a ``reranker`` (the argument, else the index's), the top
        ``rerank_depth`` fused hits are scored by it and the ``k`` best are
        returned in its order, with its scores; equal scores keep the fused
        order. A reranker cannot be combined with ``mmr_lambda``.

        Raises:
            ValueError: ``k`` or ``rerank_depth`` is below 1, ``mmr_lambda`` is
                outside [0, 1] or set together with a reranker, ``mode`` is
                unknown, a filter key occurs in no chunk, or the reranker
                returns a wrong number of scores or a non-finite one.
        """
        config = fusion or self._fusion
        reranker = reranker or self.reranker
        if rerank_depth < 1:
            raise ValueError(f"rerank_depth must be at least 1, got {rerank_depth!r}")
        if reranker is not None and mmr_lambda is not None:
            raise ValueError(
                f"mmr_lambda={mmr_lambda!r} cannot be combined with reranker "
                f"{reranker.name!r}, whose scores MMR cannot normalise; pass one of them"
            )
        fused_count = max(k, rerank_depth) if reranker is not None else k
        depth = max(config.candidates, fused_count)
        candidates = self.score_candidates(
            query, depth=depth, filters=filters, bm25_query_k3=config.bm25_query_k3
        )
        if reranker is None:
            return self.rank_candidates(
                candidates, k, fusion=config, mode=mode, mmr_lambda=mmr_lambda
            )
        fused = self.rank_candidates(candidates, fused_count, fusion=config, mode=mode)
        if not fused:
            return fused
        scores = checked_scores(
            reranker, reranker.score(query, [hit.text for hit in fused]), len(fused)
        )
        order = sorted(range(len(fused)), key=lambda i: (-scores[i], i))
        reranked = [replace(fused[i], score=scores[i]) for i in order]
        return reranked[:k]

    def score_candidates(
        self,
        query: str,
        *,
        depth: int,
        filters: dict | None = None,
        bm25_query_k3: float | None = None,
    ) -> Candidates:
        """Score ``query`` with both retrievers and keep each one's top ``depth`` chunks.

        ``bm25_query_k3`` is passed to :meth:`BM25Index.scores`.

        Raises:
            ValueError: ``depth`` is below 1 or a filter key occurs in no chunk.
        """
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth!r}")
        empty = Candidates(_NO_ROWS, np.zeros(0), np.zeros(0), depth, bm25_query_k3)
        if not self._chunks or not query.strip():
            return empty
        allowed = self._filter_rows(filters) if filters else None
        if allowed is not None and not allowed.any():
            return empty

        dense = self._dense_scores(query)
        keyword = self._bm25.scores(query, query_k3=bm25_query_k3)
        if allowed is not None:
            dense = np.where(allowed, dense, -np.inf)
            keyword = np.where(allowed, keyword, 0.0)
        return _candidates(dense, keyword, depth, bm25_query_k3)

    def score_candidates_many(
        self,
        queries: Sequence[str],
        *,
        depth: int,
        bm25_query_k3_values: Sequence[float | None] = (None,),
    ) -> dict[float | None, list[Candidates]]:
        """Score many queries as :meth:`score_candidates` does, embedding them in one batch.

        Return, for each value in ``bm25_query_k3_values``, one
        :class:`Candidates` per query in query order. The dense side is
        computed once and shared by all values. One batched embedding call
        is several times faster than one call per short query on a CPU.

        Raises:
            ValueError: ``depth`` is below 1.
        """
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth!r}")
        pieces = [
            self._query_pieces(query) if self._chunks and query.strip() else []
            for query in queries
        ]
        flat = [piece for query_pieces in pieces for piece in query_pieces]
        vectors = self._embedder.embed(flat) if flat else None
        result: dict[float | None, list[Candidates]] = {
            k3: [] for k3 in bm25_query_k3_values
        }
        start = 0
        for query, query_pieces in zip(queries, pieces):
            if not query_pieces:
                for k3 in bm25_query_k3_values:
                    empty = Candidates(_NO_ROWS, np.zeros(0), np.zeros(0), depth, k3)
                    result[k3].append(empty)
                continue
            dense = self._similarities(vectors[start : start + len(query_pieces)])
            start += len(query_pieces)
            for k3 in bm25_query_k3_values:
                keyword = self._bm25.scores(query, query_k3=k3)
                result[k3].append(_candidates(dense, keyword, depth, k3))
        return result

    def rank_candidates(
        self,
        candidates: Candidates,
        k: int,
        *,
        fusion: FusionConfig | None = None,
        mode: RetrievalMode = "hybrid",
        mmr_lambda: float | None = None,
    ) -> list[Hit]:
        """Fuse scores from :meth:`score_candidates` and return the top ``k`` hits.

        Raises:
            ValueError: ``k`` is below 1, ``mmr_lambda`` is outside [0, 1],
                ``mode`` is unknown, or the fusion needs more candidates per
                retriever than ``candidates.depth`` or another
                ``bm25_query_k3`` than they were scored with.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k!r}")
        if mmr_lambda is not None and not 0.0 <= mmr_lambda <= 1.0:
            raise ValueError(f"mmr_lambda must be within [0, 1], got {mmr_lambda!r}")
        if mode not in _MODE_DENSE_WEIGHT:
            raise ValueError(
                f"mode must be one of {sorted(_MODE_DENSE_WEIGHT)}, got {mode!r}"
            )
        config = fusion or self._fusion
        mode_weight = _MODE_DENSE_WEIGHT[mode]
        if mode_weight is not None:
            config = replace(config, dense_weight=mode_weight)
        depth = max(config.candidates, k)
        if depth > candidates.depth:
            raise ValueError(
                f"fusion takes {depth} candidates per retriever but only "
                f"{candidates.depth} were scored; call score_candidates with "
                f"depth={depth}"
            )
        if config.bm25_query_k3 != candidates.bm25_query_k3:
            raise ValueError(
                f"fusion uses bm25_query_k3={config.bm25_query_k3!r} but the candidates "
                f"were scored with {candidates.bm25_query_k3!r}; call score_candidates "
                f"with bm25_query_k3={config.bm25_query_k3!r}"
            )
        if not len(candidates.rows):
            return []

        fused = fuse(candidates.dense, candidates.keyword, config, depth)
        relevant = (
            np.isfinite(fused)
            & (
                (candidates.keyword > 0.0)
                | (candidates.dense >= self.min_dense_similarity)
            )
        ).nonzero()[0]
        order = np.lexsort((candidates.rows[relevant], -fused[relevant]))
        ranked = [
            (float(fused[position]), int(candidates.rows[position]))
            for position in relevant[order]
        ]
        if mmr_lambda is not None:
            ranked = self._mmr(ranked, k, mmr_lambda)
        return [self._hit(row, score) for score, row in ranked[:k]]

    def _mmr(
        self, ranked: list[tuple[float, int]], k: int, mmr_lambda: float
    ) -> list[tuple[float, int]]:
        """Greedily pick ``k`` of ``ranked`` by maximal marginal relevance."""
        if not ranked:
            return ranked
        top = ranked[0][0]
        # Both fusion methods score from 0 up, and all candidates can score 0
        # only under convex fusion when every retriever ties.
        relevance = np.array([score / top if top > 0 else 1.0 for score, _ in ranked])
        rows = np.array([row for _, row in ranked])
        similarity = self._vectors[rows] @ self._vectors[rows].T
        picked: list[int] = []
        redundancy = np.full(len(rows), -np.inf)
        available = np.ones(len(rows), dtype=bool)
        for _ in range(min(k, len(rows))):
            penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
            value = mmr_lambda * relevance - (1.0 - mmr_lambda) * penalty
            value[~available] = -np.inf
            choice = int(np.argmax(value))
            picked.append(choice)
            available[choice] = False
            redundancy = np.maximum(redundancy, similarity[choice])
        return [ranked[position] for position in picked]

    def _dense_scores(self, query: str) -> np.ndarray:
        """Return each chunk's cosine similarity to the query.

        MiniLM reads at most 256 word pieces, so a longer query is embedded
        in pieces of about ``QUERY_PIECE_CHARS`` and each chunk keeps its
        best match among them.
        """
        return self._similarities(self._embedder.embed(self._query_pieces(query)))

    @staticmethod
    def _query_pieces(query: str) -> list[str]:
        return split_text(query.replace("\n", "\n\n"), QUERY_PIECE_CHARS) or [query]

    def _similarities(self, piece_vectors: np.ndarray) -> np.ndarray:
        """Return each chunk's best cosine similarity over the query's piece vectors."""
        import torch

        query_vectors = torch.from_numpy(
            np.ascontiguousarray(piece_vectors, dtype=np.float32)
        )
        with torch.inference_mode():
            scores = self._torch_vectors @ query_vectors.T
            best = scores.max(dim=1).values if len(query_vectors) > 1 else scores[:, 0]
        return best.numpy()

    def _hit(self, row: int, score: float) -> Hit:
        chunk = self._chunks[row]
        return Hit(
            chunk_id=chunk["id"],
            source=chunk["source"],
            title=chunk["title"],
            heading=" > ".join(chunk["heading_path"]),
            text=chunk["text"],
            score=float(score),
            metadata=dict(chunk["metadata"]),
        )

    def _filter_rows(self, filters: Mapping[str, object]) -> np.ndarray:
        allowed = np.ones(len(self._chunks), dtype=bool)
        for key, expected in filters.items():
            rows_by_value = self._rows_by_value(key)
            if not rows_by_value:
                known = sorted(
                    {name for chunk in self._chunks for name in chunk["metadata"]}
                )
                raise ValueError(
                    f"unknown filter key {key!r}; metadata keys are {known}"
                )
            accepted = (
                expected
                if isinstance(expected, (list, tuple, set, frozenset))
                else [expected]
            )
            mask = np.zeros(len(self._chunks), dtype=bool)
            for value in accepted:
                rows = rows_by_value.get(_hashable(value))
                if rows is not None:
                    mask[rows] = True
            allowed &= mask
        return allowed

    def _rows_by_value(self, key: str) -> dict[object, np.ndarray]:
        """Build, once per key, a map from metadata value to the rows holding it."""
        if key not in self._value_rows:
            collected: dict[object, list[int]] = {}
            for row, chunk in enumerate(self._chunks):
                if key not in chunk["metadata"]:
                    continue
                value = chunk["metadata"][key]
                # A list value (such as heading_path) matches each of its items.
                values = value if isinstance(value, list) else [value]
                for item in values:
                    collected.setdefault(_hashable(item), []).append(row)
            self._value_rows[key] = {
                value: np.array(rows, dtype=np.int64)
                for value, rows in collected.items()
            }
        return self._value_rows[key]


def _candidates(
    dense: np.ndarray, keyword: np.ndarray, depth: int, bm25_query_k3: float | None
) -> Candidates:
    rows = np.union1d(
        top_rows(dense, depth, floor=-np.inf), top_rows(keyword, depth, floor=0.0)
    )
    return Candidates(rows, dense[rows], keyword[rows], depth, bm25_query_k3)


def _hashable(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def build_index(
    sources: list[Path] | Path,
    index_dir: Path,
    embedder: Embedder,
    *,
    progress: bool = True,
    record_fields: RecordFields | None = None,
    chunking: ChunkingConfig | None = None,
    fusion: FusionConfig | None = None,
) -> IngestReport:
    """Create or update the index in ``index_dir`` so it mirrors ``sources``.

    Files whose SHA-256 matches the previous build keep their chunks and
    vectors; changed files are re-chunked and re-embedded; files no longer
    under ``sources`` are removed. A file that fails to load is reported as
    ``skipped`` and contributes no chunks, and the other files are still
    indexed.

    ``fusion`` is stored in the manifest as the index's hybrid fusion
    settings. Without it a rebuild keeps the settings already stored, and a
    new index gets the :class:`FusionConfig` defaults.

    Raises:
        FileNotFoundError: a source path does not exist.
        IndexFormatError: ``index_dir`` contains files this package did not write.
        EmbedderMismatchError: ``index_dir`` was built with another embedder.
        IngestionError: two sources map to the same relative path.
        FusionConfigError: the existing manifest's fusion settings are
            invalid and ``fusion`` does not replace them.
    """
    from ingestion.building import run_build

    paths = (
        [Path(sources)]
        if isinstance(sources, (str, Path))
        else [Path(s) for s in sources]
    )
    return run_build(
        paths,
        Path(index_dir),
        embedder,
        progress=progress,
        record_fields=record_fields or RecordFields(),
        chunking=chunking or ChunkingConfig(),
        fusion=fusion,
    )


def _read_manifest(index_dir: Path) -> dict:
    manifest_path = index_dir / MANIFEST_NAME
    if not index_dir.is_dir():
        raise IndexFormatError(
            f"index folder {str(index_dir)!r} not found; build it first"
        )
    if not manifest_path.is_file():
        raise IndexFormatError(
            f"{str(index_dir)!r} is not a knowledge index: {MANIFEST_NAME} is missing; "
            "build one with `python -m ingestion --source DIR --index DIR`"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexFormatError(
            f"{str(manifest_path)!r} is not valid JSON: {exc}"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise IndexFormatError(
            f"{str(manifest_path)!r} is not a {FORMAT_NAME} manifest; "
            "this folder was not written by this package"
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(
            f"index format version {manifest.get('format_version')!r} in {str(index_dir)!r} "
            f"is not supported (expected {FORMAT_VERSION}); rebuild the index"
        )
    data_dir = manifest.get("data_dir")
    if not isinstance(data_dir, str) or not _DATA_DIR_PATTERN.match(data_dir):
        raise IndexFormatError(
            f"invalid data_dir {data_dir!r} in {str(manifest_path)!r}"
        )
    return manifest


def read_fusion(manifest: dict, index_dir: Path) -> FusionConfig:
    """Return the manifest's fusion settings, or the defaults if it stores none.

    Raises:
        FusionConfigError: the ``fusion`` entry is invalid; the message names
            the manifest, the value and the fix.
    """
    entry = manifest.get("fusion")
    if entry is None:
        return FusionConfig()
    try:
        return FusionConfig.from_dict(entry)
    except FusionConfigError as exc:
        raise FusionConfigError(
            f"{str(Path(index_dir) / MANIFEST_NAME)!r}: {exc}"
        ) from None


def _check_embedder(manifest: dict, embedder: Embedder, index_dir: Path) -> None:
    built = manifest.get("embedder") or {}
    if (
        built.get("name") != embedder.name
        or built.get("dimension") != embedder.dimension
    ):
        raise EmbedderMismatchError(
            f"index {str(index_dir)!r} was built with embedder {built.get('name')!r} "
            f"(dimension {built.get('dimension')}), but the given embedder is "
            f"{embedder.name!r} (dimension {embedder.dimension}); "
            "load it with the same embedder or rebuild it into a new folder"
        )


def _read_data(index_dir: Path, manifest: dict) -> tuple[list[dict], np.ndarray]:
    data_dir = index_dir / manifest["data_dir"]
    for name, expected in manifest.get("data_files", {}).items():
        path = data_dir / name
        if not path.is_file():
            raise IndexFormatError(
                f"index data file {str(path)!r} is missing; rebuild the index"
            )
        if file_sha256(path) != expected:
            raise IndexFormatError(
                f"index data file {str(path)!r} does not match its checksum; rebuild the index"
            )
    try:
        vectors = np.load(data_dir / VECTORS_NAME, allow_pickle=False)
        with open(data_dir / CHUNKS_NAME, encoding="utf-8") as handle:
            chunks = [json.loads(line) for line in handle]
    except (OSError, ValueError) as exc:
        raise IndexFormatError(
            f"cannot read index data in {str(data_dir)!r}: {exc}"
        ) from None
    expected_shape = (manifest.get("chunk_count"), manifest["embedder"]["dimension"])
    if (
        vectors.dtype != np.float32
        or vectors.shape != expected_shape
        or len(chunks) != expected_shape[0]
    ):
        raise IndexFormatError(
            f"index data in {str(data_dir)!r} has {len(chunks)} chunks and vectors "
            f"{vectors.shape} {vectors.dtype}, expected {expected_shape} float32"
        )
    return chunks, vectors


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
