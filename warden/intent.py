"""Intent classifier: routes a customer message to a known intent or to the chat model.

A logistic regression over the MiniLM sentence embedding plus word and
character TF-IDF features. Its probabilities are temperature-scaled on data
held out of training; a prediction below the confidence threshold carries
``path="model"`` so the graph lets the LLM decide.

Usage: ``python -m warden.intent train --data examples/retail/intents.jsonl --out DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from warden.actions import INTENT_LABELS

if TYPE_CHECKING:
    from ingestion.embedder import Embedder

logger = logging.getLogger(__name__)

FORMAT_NAME = "warden-intent-classifier"
FORMAT_VERSION = 1
MODEL_FILE = "intent_model.json"
# The retail labels are the ones the graph's typed intent accepts.
RETAIL_INTENTS = INTENT_LABELS
DEFAULT_C = 20.0
# Share of correctly classified held-out messages that must clear the default
# threshold; the rest, and most out-of-scope messages, go to the model.
DEFAULT_COVERAGE = 0.95
_HOLDOUT_FRACTION = 0.1
_SMALL_DATASET = 2000

PredictionPath = Literal["classifier", "model"]


@dataclass(frozen=True)
class IntentPrediction:
    label: str
    """Most probable intent, reported even when ``path`` is ``"model"``."""
    confidence: float
    """Calibrated probability of ``label``, in [0, 1]."""
    path: PredictionPath
    """``"classifier"`` when ``confidence`` reaches the threshold, else ``"model"``."""
    alternatives: tuple[tuple[str, float], ...] = ()
    """The next most probable intents with their probabilities."""


def training_checksum(texts: Sequence[str], labels: Sequence[str]) -> str:
    """Hash the (text, label) pairs in order, independent of file formatting."""
    digest = hashlib.sha256()
    for text, label in zip(texts, labels, strict=True):
        digest.update(json.dumps([text, label], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


class IntentClassifier:
    """A trained classifier; create one with :meth:`train` or :meth:`load`."""

    def __init__(
        self,
        *,
        labels: list[str],
        coef: np.ndarray,
        intercept: np.ndarray,
        word_vectorizer,
        char_vectorizer,
        temperature: float,
        threshold: float,
        embedder: Embedder,
        metadata: dict,
    ) -> None:
        self.labels = labels
        self.threshold = threshold
        self.temperature = temperature
        self.metadata = metadata
        self._embedder = embedder
        self._word = word_vectorizer
        self._char = char_vectorizer
        dimension = embedder.dimension
        # Transposed so one message's features select rows: (features, labels).
        self._coef_embedding = np.ascontiguousarray(
            coef[:, :dimension].T, dtype=np.float32
        )
        self._coef_lexical = np.ascontiguousarray(
            coef[:, dimension:].T, dtype=np.float32
        )
        self._intercept = intercept.astype(np.float32)
        self._coef = coef
        word_size = len(_vocabulary(word_vectorizer))
        self._lexical_parts = [
            (
                word_vectorizer.build_analyzer(),
                _vocabulary(word_vectorizer),
                word_vectorizer.idf_.astype(np.float32),
                0,
            ),
            (
                char_vectorizer.build_analyzer(),
                _vocabulary(char_vectorizer),
                char_vectorizer.idf_.astype(np.float32),
                word_size,
            ),
        ]

    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        labels: Sequence[str],
        embedder: Embedder,
        *,
        threshold: float | None = None,
        regularization: float = DEFAULT_C,
        embeddings: np.ndarray | None = None,
        seed: int = 0,
    ) -> "IntentClassifier":
        """Fit the classifier, its temperature and, unless given, its threshold.

        The temperature and default threshold come from held-out predictions:
        5-fold cross-validation for fewer than 2,000 examples, else a 10 %
        stratified split. The final model is then refit on all examples.
        ``embeddings`` may hold precomputed rows of ``embedder.embed(texts)``.

        Raises:
            ValueError: fewer than two labels, a label with fewer than two
                examples, or ``texts`` and ``labels`` of different lengths.
        """
        from sklearn.model_selection import StratifiedKFold, train_test_split

        texts, labels = list(texts), list(labels)
        if len(texts) != len(labels):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels")
        names, counts = np.unique(labels, return_counts=True)
        if len(names) < 2:
            raise ValueError(f"need at least two intents, got {list(names)}")
        rare = [str(name) for name, count in zip(names, counts) if count < 2]
        if rare:
            raise ValueError(f"intents with fewer than two examples: {rare}")
        if embeddings is None:
            embeddings = embedder.embed(texts)
        y = np.array(labels)

        started = time.perf_counter()
        held_logits, held_labels = [], []
        if len(texts) < _SMALL_DATASET:
            folds = min(5, int(counts.min()))
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            splits = list(splitter.split(texts, y))
        else:
            indices = np.arange(len(texts))
            train_rows, held_rows = train_test_split(
                indices, test_size=_HOLDOUT_FRACTION, stratify=y, random_state=seed
            )
            splits = [(train_rows, held_rows)]
        for train_rows, held_rows in splits:
            fold = _fit(
                [texts[i] for i in train_rows],
                y[train_rows],
                embeddings[train_rows],
                regularization,
            )
            fold_logits = fold.logits(
                [texts[i] for i in held_rows], embeddings[held_rows]
            )
            # A fold may miss a rare label, so map its classes into the full list.
            held_logits.append(_align(fold.classes, names, fold_logits))
            held_labels.append(y[held_rows])
        logits = np.vstack(held_logits)
        truth = np.concatenate(held_labels)
        truth_index = np.searchsorted(names, truth)
        temperature = _fit_temperature(logits, truth_index)
        probabilities = _softmax(logits / temperature)
        correct = probabilities.argmax(axis=1) == truth_index
        if threshold is None:
            confident = probabilities.max(axis=1)[correct]
            threshold = (
                float(np.quantile(confident, 1.0 - DEFAULT_COVERAGE))
                if len(confident)
                else 0.5
            )

        final = _fit(texts, y, embeddings, regularization)
        metadata = {
            "training_data_sha256": training_checksum(texts, labels),
            "examples": len(texts),
            "label_counts": {
                str(name): int(count) for name, count in zip(names, counts)
            },
            "regularization_C": regularization,
            "heldout_accuracy": float(correct.mean()),
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "training_seconds": round(time.perf_counter() - started, 1),
        }
        logger.info(
            "intent classifier trained examples=%d labels=%d heldout_accuracy=%.3f "
            "temperature=%.2f threshold=%.3f",
            len(texts),
            len(names),
            metadata["heldout_accuracy"],
            temperature,
            threshold,
        )
        return cls(
            labels=[str(name) for name in names],
            coef=final.coef,
            intercept=final.intercept,
            word_vectorizer=final.word,
            char_vectorizer=final.char,
            temperature=temperature,
            threshold=float(threshold),
            embedder=embedder,
            metadata=metadata,
        )

    def predict(
        self, message: str | np.ndarray, *, text: str | None = None
    ) -> IntentPrediction:
        """Classify one message, given as text or as its embedding.

        With an embedding, pass the message's ``text`` too, because the
        TF-IDF features need the words.

        Raises:
            ValueError: an embedding without ``text``, or of the wrong shape.
        """
        if isinstance(message, str):
            text = message
            embedding = self._embedder.embed([message])[0]
        else:
            embedding = np.asarray(message, dtype=np.float32).reshape(-1)
            if text is None:
                raise ValueError(
                    "predict() got an embedding without text=; pass the message text too"
                )
            if embedding.shape != (self._embedder.dimension,):
                raise ValueError(
                    f"embedding has shape {embedding.shape}, expected ({self._embedder.dimension},)"
                )
        return self._prediction(self.probabilities(text, embedding))

    def probabilities(self, text: str, embedding: np.ndarray) -> np.ndarray:
        """Return calibrated probabilities over :attr:`labels` for one message."""
        logits = (
            embedding @ self._coef_embedding
            + self._intercept
            + self._lexical_logits(text)
        )
        return _softmax(logits[None, :] / self.temperature)[0]

    def _lexical_logits(self, text: str) -> np.ndarray:
        """Compute the TF-IDF part of the logits for one message.

        Equal to scikit-learn's ``transform`` with ``sublinear_tf`` and L2
        norm, but without building a sparse matrix, which costs about a
        millisecond per call.
        """
        total = np.zeros(len(self.labels), dtype=np.float32)
        for analyzer, vocabulary, idf, offset in self._lexical_parts:
            counts: dict[int, int] = {}
            for term in analyzer(text):
                column = vocabulary.get(term)
                if column is not None:
                    counts[column] = counts.get(column, 0) + 1
            if not counts:
                continue
            columns = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            frequencies = np.fromiter(
                counts.values(), dtype=np.float32, count=len(counts)
            )
            weights = (1.0 + np.log(frequencies)) * idf[columns]
            weights /= np.linalg.norm(weights)
            total += weights @ self._coef_lexical[offset + columns]
        return total

    def _prediction(self, probabilities: np.ndarray) -> IntentPrediction:
        order = np.argsort(-probabilities)
        best = int(order[0])
        confidence = float(probabilities[best])
        return IntentPrediction(
            label=self.labels[best],
            confidence=confidence,
            path="classifier" if confidence >= self.threshold else "model",
            alternatives=tuple(
                (self.labels[int(i)], float(probabilities[i])) for i in order[1:3]
            ),
        )

    def save(self, directory: Path) -> None:
        """Write the model as JSON and ``.npy`` files into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(
            directory / "coef.npy", self._coef.astype(np.float32), allow_pickle=False
        )
        np.save(directory / "intercept.npy", self._intercept, allow_pickle=False)
        np.save(
            directory / "word_idf.npy",
            self._word.idf_.astype(np.float64),
            allow_pickle=False,
        )
        np.save(
            directory / "char_idf.npy",
            self._char.idf_.astype(np.float64),
            allow_pickle=False,
        )
        arrays = ("coef.npy", "intercept.npy", "word_idf.npy", "char_idf.npy")
        document = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "labels": self.labels,
            "embedder": {
                "name": self._embedder.name,
                "dimension": self._embedder.dimension,
            },
            "temperature": self.temperature,
            "threshold": self.threshold,
            "word_vocabulary": _vocabulary_list(self._word),
            "char_vocabulary": _vocabulary_list(self._char),
            "array_sha256": {name: _sha256(directory / name) for name in arrays},
            "training": self.metadata,
        }
        tmp = directory / f".{MODEL_FILE}.tmp"
        tmp.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
        tmp.replace(directory / MODEL_FILE)

    @classmethod
    def load(cls, directory: Path, embedder: Embedder) -> "IntentClassifier":
        """Read a model written by :meth:`save`.

        Raises:
            ValueError: the folder contains no model of this format, an array
                does not match its checksum, or ``embedder`` differs from the
                one used in training.
        """
        directory = Path(directory)
        path = directory / MODEL_FILE
        if not path.is_file():
            raise ValueError(
                f"no intent model in {str(directory)!r}: {MODEL_FILE} is missing"
            )
        document = json.loads(path.read_text(encoding="utf-8"))
        if (
            document.get("format") != FORMAT_NAME
            or document.get("format_version") != FORMAT_VERSION
        ):
            raise ValueError(
                f"{str(path)!r} is not a {FORMAT_NAME} version {FORMAT_VERSION} file; retrain the model"
            )
        trained_with = document["embedder"]
        if trained_with != {"name": embedder.name, "dimension": embedder.dimension}:
            raise ValueError(
                f"intent model was trained with embedder {trained_with['name']!r} "
                f"(dimension {trained_with['dimension']}), but the given embedder is "
                f"{embedder.name!r} (dimension {embedder.dimension}); retrain it"
            )
        for name, expected in document["array_sha256"].items():
            if _sha256(directory / name) != expected:
                raise ValueError(
                    f"{str(directory / name)!r} does not match its checksum; retrain the model"
                )
        coef = np.load(directory / "coef.npy", allow_pickle=False)
        return cls(
            labels=list(document["labels"]),
            coef=coef,
            intercept=np.load(directory / "intercept.npy", allow_pickle=False),
            word_vectorizer=_restore_vectorizer(
                "word",
                document["word_vocabulary"],
                np.load(directory / "word_idf.npy", allow_pickle=False),
            ),
            char_vectorizer=_restore_vectorizer(
                "char",
                document["char_vocabulary"],
                np.load(directory / "char_idf.npy", allow_pickle=False),
            ),
            temperature=float(document["temperature"]),
            threshold=float(document["threshold"]),
            embedder=embedder,
            metadata=document.get("training", {}),
        )


@dataclass
class _FittedModel:
    classes: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    word: object
    char: object

    def logits(self, texts: list[str], embeddings: np.ndarray) -> np.ndarray:
        lexical = _lexical_features(self.word, self.char, texts)
        return (
            embeddings @ self.coef[:, : embeddings.shape[1]].T
            + lexical @ self.coef[:, embeddings.shape[1] :].T
            + self.intercept
        )


def _new_vectorizer(kind: str, vocabulary: dict[str, int] | None = None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    if kind == "word":
        return TfidfVectorizer(
            ngram_range=(1, 2),
            sublinear_tf=True,
            lowercase=True,
            vocabulary=vocabulary,
            dtype=np.float32,
        )
    return TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 5),
        sublinear_tf=True,
        lowercase=True,
        min_df=1 if vocabulary is not None else 2,
        vocabulary=vocabulary,
        dtype=np.float32,
    )


def _restore_vectorizer(kind: str, terms: list[str], idf: np.ndarray):
    vectorizer = _new_vectorizer(
        kind, {term: index for index, term in enumerate(terms)}
    )
    vectorizer.idf_ = idf
    return vectorizer


def _vocabulary(vectorizer) -> dict[str, int]:
    fitted = getattr(vectorizer, "vocabulary_", None)
    return fitted if fitted is not None else vectorizer.vocabulary


def _vocabulary_list(vectorizer) -> list[str]:
    vocabulary = _vocabulary(vectorizer)
    terms = [""] * len(vocabulary)
    for term, index in vocabulary.items():
        terms[index] = term
    return terms


def _lexical_features(word, char, texts: list[str]):
    from scipy import sparse

    return sparse.hstack([word.transform(texts), char.transform(texts)], format="csr")


def _fit(
    texts: list[str], y: np.ndarray, embeddings: np.ndarray, regularization: float
) -> _FittedModel:
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    word = _new_vectorizer("word")
    char = _new_vectorizer("char")
    if len(texts) < 50:
        # Too few messages for a min_df of 2 to leave any character n-grams.
        char.set_params(min_df=1)
    features = sparse.hstack(
        [
            sparse.csr_matrix(embeddings),
            word.fit_transform(texts),
            char.fit_transform(texts),
        ],
        format="csr",
    )
    model = LogisticRegression(C=regularization, max_iter=3000)
    model.fit(features, y)
    coef = model.coef_
    intercept = model.intercept_
    if len(model.classes_) == 2:
        # Binary logistic regression stores one row; expand to one per class.
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return _FittedModel(
        model.classes_,
        coef.astype(np.float32),
        intercept.astype(np.float32),
        word,
        char,
    )


def _align(
    fold_classes: np.ndarray, names: np.ndarray, logits: np.ndarray
) -> np.ndarray:
    full = np.full((logits.shape[0], len(names)), -1e4, dtype=np.float64)
    full[:, np.searchsorted(names, fold_classes)] = logits
    return full


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _fit_temperature(logits: np.ndarray, truth_index: np.ndarray) -> float:
    """Pick the temperature that minimises held-out negative log-likelihood."""

    def nll(temperature: float) -> float:
        probabilities = _softmax(logits / temperature)
        return float(
            -np.log(
                probabilities[np.arange(len(truth_index)), truth_index] + 1e-12
            ).mean()
        )

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 81))
    best = min(grid, key=nll)
    fine = np.linspace(best / 1.1, best * 1.1, 21)
    return float(min(fine, key=nll))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_examples(path: Path) -> tuple[list[str], list[str]]:
    """Read ``{"text": ..., "intent": ...}`` lines from a JSONL file.

    Raises:
        ValueError: a line is not a JSON object with string ``text`` and ``intent``.
    """
    texts, labels = [], []
    for number, line in enumerate(
        Path(path).read_text(encoding="utf-8").splitlines(), start=1
    ):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("text"), str)
            or not isinstance(record.get("intent"), str)
        ):
            raise ValueError(
                f'{path}:{number}: expected {{"text": str, "intent": str}}, got {line[:80]!r}'
            )
        texts.append(record["text"])
        labels.append(record["intent"])
    return texts, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m warden.intent",
        description="Train or query the intent classifier.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train", help="train on a JSONL file of {text, intent} lines"
    )
    train.add_argument("--data", type=Path, required=True, help="JSONL training file")
    train.add_argument(
        "--out", type=Path, required=True, help="folder to write the model into"
    )
    train.add_argument(
        "--threshold",
        type=float,
        help="confidence below which the model decides (default: calibrated)",
    )
    predict = commands.add_parser(
        "predict", help="classify messages given as arguments"
    )
    predict.add_argument(
        "--model", type=Path, required=True, help="folder written by train"
    )
    predict.add_argument("messages", nargs="+", help="customer messages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

    from ingestion.embedder import load_default_embedder

    try:
        if args.command == "train":
            texts, labels = read_examples(args.data)
            classifier = IntentClassifier.train(
                texts, labels, load_default_embedder(), threshold=args.threshold
            )
            classifier.metadata["training_file"] = str(args.data)
            classifier.metadata["training_file_sha256"] = _sha256(args.data)
            classifier.save(args.out)
            print(
                f"trained on {len(texts)} examples, {len(classifier.labels)} intents; "
                f"held-out accuracy {classifier.metadata['heldout_accuracy']:.3f}, "
                f"threshold {classifier.threshold:.3f}; written to {args.out}"
            )
        else:
            classifier = IntentClassifier.load(args.model, load_default_embedder())
            for message in args.messages:
                prediction = classifier.predict(message)
                print(
                    f"{prediction.label}\t{prediction.confidence:.3f}\t{prediction.path}\t{message}"
                )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
