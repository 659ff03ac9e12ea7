"""Intent benchmark: BANKING77 accuracy, classifier latency, out-of-scope routing, retail data.

Run from the project root:

    .venv/bin/python bench/intent_bench.py --data ../shared/data --out bench/results/intent.md

Trains four classifiers (two on BANKING77, one on BANKING77 without the
held-out intents, one on the retail examples); about 10 minutes on 2 cores.
"""

from __future__ import annotations

import csv
import logging
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from arguments import data_parser, write_report  # noqa: E402
from retrieval_bench import machine_description  # noqa: E402
from ingestion import load_default_embedder  # noqa: E402
from warden.intent import IntentClassifier, read_examples  # noqa: E402

# Every 8th of the 77 intents in sorted order, 10 in all: unseen in training,
# they stand in for out-of-scope traffic.
HELD_OUT_STEP = 8
LATENCY_MESSAGES = 1000


def read_csv(path: Path) -> tuple[list[str], list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [row["text"] for row in rows], [row["category"] for row in rows]


def percentiles(values: list[float]) -> str:
    return f"p50 {np.percentile(values, 50):.3f} ms, p99 {np.percentile(values, 99):.3f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = data_parser(__doc__.splitlines()[0], "bench/results/intent.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    embedder = load_default_embedder()
    started = time.perf_counter()

    train_texts, train_labels = read_csv(args.data / "intent" / "banking77_train.csv")
    test_texts, test_labels = read_csv(args.data / "intent" / "banking77_test.csv")
    embed_started = time.perf_counter()
    train_vectors = embedder.embed(train_texts)
    test_vectors = embedder.embed(test_texts)
    batch_rate = (len(train_texts) + len(test_texts)) / (
        time.perf_counter() - embed_started
    )

    fit_started = time.perf_counter()
    classifier = IntentClassifier.train(
        train_texts, train_labels, embedder, embeddings=train_vectors
    )
    fit_seconds = time.perf_counter() - fit_started
    predictions, classifier_ms = [], []
    for text, vector in zip(test_texts, test_vectors):
        tick = time.perf_counter()
        prediction = classifier.predict(vector, text=text)
        classifier_ms.append((time.perf_counter() - tick) * 1000)
        predictions.append(prediction)
    accuracy = statistics.fmean(
        p.label == label for p, label in zip(predictions, test_labels)
    )
    covered = [
        (p, label)
        for p, label in zip(predictions, test_labels)
        if p.path == "classifier"
    ]
    embed_ms = []
    for text in test_texts[:LATENCY_MESSAGES]:
        tick = time.perf_counter()
        embedder.embed([text])
        embed_ms.append((time.perf_counter() - tick) * 1000)
    print(f"banking77 accuracy {accuracy:.4f}", file=sys.stderr)

    intents = sorted(set(train_labels))
    held_out = set(intents[::HELD_OUT_STEP])
    keep = [i for i, label in enumerate(train_labels) if label not in held_out]
    in_scope = IntentClassifier.train(
        [train_texts[i] for i in keep],
        [train_labels[i] for i in keep],
        embedder,
        embeddings=train_vectors[keep],
    )
    known = [
        (t, v, label)
        for t, v, label in zip(test_texts, test_vectors, test_labels)
        if label not in held_out
    ]
    unknown = [
        (t, v, label)
        for t, v, label in zip(test_texts, test_vectors, test_labels)
        if label in held_out
    ]
    known_predictions = [(in_scope.predict(v, text=t), label) for t, v, label in known]
    unknown_predictions = [in_scope.predict(v, text=t) for t, v, _ in unknown]
    known_confidence = np.array([p.confidence for p, _ in known_predictions])
    unknown_confidence = np.array([p.confidence for p in unknown_predictions])
    auroc = float(
        (known_confidence[:, None] > unknown_confidence[None, :]).mean()
        + 0.5 * (known_confidence[:, None] == unknown_confidence[None, :]).mean()
    )
    known_covered = [
        (p, label) for p, label in known_predictions if p.path == "classifier"
    ]
    oos_to_model = statistics.fmean(p.path == "model" for p in unknown_predictions)
    sweep = []
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95):
        sweep.append(
            (
                threshold,
                float((known_confidence >= threshold).mean()),
                float((unknown_confidence < threshold).mean()),
            )
        )

    retail_texts, retail_labels = read_examples(Path("examples/retail/intents.jsonl"))
    retail = IntentClassifier.train(retail_texts, retail_labels, embedder)

    lines = [
        "# Intent classifier benchmark",
        "",
        f"Command: `.venv/bin/python bench/intent_bench.py --data {args.data} --out {args.out}`",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {machine_description()}.",
        f"Model: logistic regression (C={classifier.metadata['regularization_C']}) over the "
        f"{embedder.name} embedding + word 1-2-gram and character 2-5-gram TF-IDF, "
        "temperature-scaled on a 10 % held-out split of the training set.",
        "",
        "## BANKING77 (train on train, report on test)",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| test accuracy, {len(test_texts)} messages, 77 intents | **{accuracy * 100:.2f} %** |",
        "| published: fine-tuned BERT-large / USE+ConveRT | 93.66 % / 93.36 % |",
        f"| classifier latency per message, given the embedding | {percentiles(classifier_ms)} |",
        f"| embedding one message (MiniLM, CPU) | {percentiles(embed_ms)} |",
        f"| embedding in batches of 32 | {batch_rate:.0f} messages/s |",
        f"| training time on {len(train_texts)} messages (two fits) | {fit_seconds:.0f} s |",
        f"| calibrated temperature / default threshold | {classifier.temperature:.2f} / {classifier.threshold:.3f} |",
        f"| test messages at or above the threshold | {len(covered) / len(predictions) * 100:.1f} %, "
        f"accuracy on them {statistics.fmean(p.label == label for p, label in covered) * 100:.2f} % |",
        "",
        "## Out-of-scope routing",
        "",
        f"{len(held_out)} intents left out of training (every {HELD_OUT_STEP}th in sorted order: "
        f"{', '.join(sorted(held_out))}); their {len(unknown)} test messages play unseen, "
        f"out-of-scope requests. The other {len(known)} test messages are in scope.",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| default threshold (95 % of correct held-out predictions clear it) | {in_scope.threshold:.3f} |",
        f"| in-scope messages sent to the classifier path | {len(known_covered) / len(known) * 100:.1f} % |",
        f"| accuracy on those | {statistics.fmean(p.label == label for p, label in known_covered) * 100:.2f} % |",
        f"| out-of-scope messages sent to the model path | {oos_to_model * 100:.1f} % |",
        f"| AUROC of confidence, in scope vs out of scope | {auroc:.3f} |",
        "",
        "| threshold | in scope kept on classifier path | out of scope sent to model |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {t:.2f} | {kept * 100:.1f} % | {routed * 100:.1f} % |"
        for t, kept, routed in sweep
    ]
    lines += [
        "",
        "## Retail examples",
        "",
        f"`examples/retail/intents.jsonl`: {len(retail_texts)} messages, {len(set(retail_labels))} intents. "
        f"5-fold cross-validated accuracy {retail.metadata['heldout_accuracy'] * 100:.1f} %, "
        f"temperature {retail.temperature:.2f}, default threshold {retail.threshold:.3f}.",
        "",
        f"Total benchmark runtime: {time.perf_counter() - started:.0f} s.",
    ]
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
