"""Okapi BM25 over chunk texts, stored as term-major sparse arrays.

Weights are precomputed per (term, chunk), so scoring a query is one
scatter-add per query term. Arrays are saved as ``.npy`` files and the
vocabulary as JSON, so loading never unpickles anything.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

K1 = 1.2
B = 0.75
TOKENIZER_VERSION = 1

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because
    been before being below between both but by can could did do does doing down
    during each few for from further had has have having he her here hers herself
    him himself his how i if in into is it its itself just me more most my myself
    no nor not of off on once only or other our ours ourselves out over own same
    she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when
    where which while who whom why will with would you your yours yourself
    yourselves""".split()
)


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens without stopwords, with plural ``-s`` folded."""
    tokens = []
    for token in _TOKEN.findall(text.lower()):
        if token in _STOPWORDS:
            continue
        if len(token) > 4 and token.endswith("ies"):
            token = token[:-3] + "y"
        elif (
            len(token) > 3
            and token.endswith("s")
            and not token.endswith(("ss", "us", "is"))
        ):
            token = token[:-1]
        tokens.append(token)
    return tokens


@dataclass
class BM25Index:
    vocabulary: dict[str, int]
    indptr: np.ndarray
    """Offsets into ``doc_ids`` and ``weights`` per term id, length ``len(vocabulary) + 1``."""
    doc_ids: np.ndarray
    weights: np.ndarray
    size: int
    """Number of indexed chunks."""

    @classmethod
    def build(cls, texts: list[str]) -> "BM25Index":
        counts = [Counter(tokenize(text)) for text in texts]
        lengths = np.array([sum(c.values()) for c in counts], dtype=np.float64)
        average = float(lengths.mean()) if len(lengths) and lengths.mean() > 0 else 1.0
        postings: dict[str, list[tuple[int, int]]] = {}
        for doc_id, counter in enumerate(counts):
            for term, frequency in counter.items():
                postings.setdefault(term, []).append((doc_id, frequency))

        vocabulary = {term: term_id for term_id, term in enumerate(sorted(postings))}
        indptr = np.zeros(len(vocabulary) + 1, dtype=np.int64)
        doc_ids = np.empty(sum(len(p) for p in postings.values()), dtype=np.int32)
        weights = np.empty(len(doc_ids), dtype=np.float32)
        n = len(texts)
        offset = 0
        for term, term_id in vocabulary.items():
            entries = postings[term]
            ids = np.fromiter(
                (d for d, _ in entries), dtype=np.int32, count=len(entries)
            )
            tf = np.fromiter(
                (f for _, f in entries), dtype=np.float64, count=len(entries)
            )
            # The "+ 1" inside the log (Lucene's variant) keeps idf positive for
            # terms in more than half of the chunks.
            idf = np.log(1.0 + (n - len(entries) + 0.5) / (len(entries) + 0.5))
            norm = tf + K1 * (1.0 - B + B * lengths[ids] / average)
            doc_ids[offset : offset + len(entries)] = ids
            weights[offset : offset + len(entries)] = idf * tf * (K1 + 1.0) / norm
            offset += len(entries)
            indptr[term_id + 1] = offset
        return cls(vocabulary, indptr, doc_ids, weights, n)

    def scores(self, query: str, *, query_k3: float | None = None) -> np.ndarray:
        """Return the BM25 score of every chunk for ``query``; zero where no term matches.

        With ``query_k3`` unset each distinct query term counts once, as in
        Lucene. Otherwise a term occurring ``n`` times in the query is
        weighted ``(query_k3 + 1) * n / (query_k3 + n)``, Okapi BM25's
        query-term saturation, so a long message that repeats a term leans
        towards it.
        """
        scores = np.zeros(self.size, dtype=np.float32)
        for term, count in Counter(tokenize(query)).items():
            term_id = self.vocabulary.get(term)
            if term_id is None:
                continue
            start, end = self.indptr[term_id], self.indptr[term_id + 1]
            weights = self.weights[start:end]
            if query_k3 is not None:
                weights = weights * np.float32(
                    (query_k3 + 1) * count / (query_k3 + count)
                )
            # A term lists each chunk once, so plain fancy-index addition is exact.
            scores[self.doc_ids[start:end]] += weights
        return scores

    def save(self, folder: Path) -> list[str]:
        """Write the index into ``folder`` and return the file names written."""
        np.save(folder / "bm25_indptr.npy", self.indptr, allow_pickle=False)
        np.save(folder / "bm25_doc_ids.npy", self.doc_ids, allow_pickle=False)
        np.save(folder / "bm25_weights.npy", self.weights, allow_pickle=False)
        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        (folder / "bm25_vocabulary.json").write_text(
            json.dumps(
                {
                    "tokenizer_version": TOKENIZER_VERSION,
                    "size": self.size,
                    "terms": terms,
                }
            ),
            encoding="utf-8",
        )
        return [
            "bm25_indptr.npy",
            "bm25_doc_ids.npy",
            "bm25_weights.npy",
            "bm25_vocabulary.json",
        ]

    @classmethod
    def load(cls, folder: Path) -> "BM25Index":
        meta = json.loads((folder / "bm25_vocabulary.json").read_text(encoding="utf-8"))
        if meta.get("tokenizer_version") != TOKENIZER_VERSION:
            raise ValueError(
                f"BM25 tokenizer version {meta.get('tokenizer_version')!r} != "
                f"{TOKENIZER_VERSION}; rebuild the index"
            )
        vocabulary = {term: term_id for term_id, term in enumerate(meta["terms"])}
        indptr = np.load(folder / "bm25_indptr.npy", allow_pickle=False)
        doc_ids = np.load(folder / "bm25_doc_ids.npy", allow_pickle=False)
        weights = np.load(folder / "bm25_weights.npy", allow_pickle=False)
        if len(indptr) != len(vocabulary) + 1 or len(doc_ids) != len(weights):
            raise ValueError(
                "BM25 arrays do not match the vocabulary; rebuild the index"
            )
        return cls(vocabulary, indptr, doc_ids, weights, int(meta["size"]))
