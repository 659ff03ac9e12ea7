"""Ingestion benchmark: cold-build throughput and quality, int8 vs float32 embedder.

Run from the project root:

    .venv/bin/python bench/ingest_bench.py --data ../shared/data --out bench/results/ingest.md

Builds the τ-Banking knowledge base into a fresh folder with each embedder,
then times the stages of a build apart. With ``--quality`` it also compares
the two embedders on τ-Banking and StackFAQ retrieval and BANKING77 intent
accuracy, which adds about 10 minutes on 2 cores.
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from arguments import data_parser, write_report  # noqa: E402
from intent_bench import read_csv  # noqa: E402
from retrieval_bench import (  # noqa: E402
    FIXED_SETTINGS,
    bench_stackfaq,
    bench_tau_banking,
    machine_description,
)
from ingestion import Embedder, build_index  # noqa: E402
from ingestion.bm25 import BM25Index  # noqa: E402
from ingestion.building import _chunk_file, _chunk_record, _write_index, discover_files  # noqa: E402
from ingestion.chunking import ChunkingConfig  # noqa: E402
from ingestion.embedder import load_default_embedder, load_float32_embedder  # noqa: E402
from ingestion.loaders import RecordFields  # noqa: E402
from warden.intent import IntentClassifier  # noqa: E402

BUILDS_PER_EMBEDDER = 2


def load_embedders(skip_float32: bool) -> list[tuple[str, Embedder, float]]:
    """Load each embedder and time it, the int8 default first."""
    loaded = []
    for label, load in (
        ("int8", load_default_embedder),
        ("float32", load_float32_embedder),
    ):
        if label == "float32" and skip_float32:
            continue
        started = time.perf_counter()
        embedder = load()
        embedder.embed(["warm-up"])
        loaded.append((label, embedder, time.perf_counter() - started))
    return loaded


def time_cold_builds(
    documents: Path, embedder: Embedder, work: Path
) -> list[tuple[int, float, float, float]]:
    """Return (chunks, seconds, CPU seconds, load average) for each cold build into a new folder.

    CPU seconds are summed over the process's threads.
    """
    runs = []
    for attempt in range(BUILDS_PER_EMBEDDER):
        cpu_started = time.process_time()
        report = build_index(
            documents, work / f"cold-{attempt}", embedder, progress=False
        )
        cpu_seconds = time.process_time() - cpu_started
        runs.append((report.embedded, report.seconds, cpu_seconds, os.getloadavg()[0]))
    return runs


def time_stages(documents: Path, embedder: Embedder, work: Path) -> dict[str, float]:
    """Time the stages of one build apart: read and chunk, embed, BM25 and write."""
    started = time.perf_counter()
    chunks = []
    for source in discover_files([documents]):
        file_chunks, _ = _chunk_file(source, RecordFields(), ChunkingConfig())
        chunks.extend(file_chunks)
    read_seconds = time.perf_counter() - started

    texts = sorted((chunk.indexed_text() for chunk in chunks), key=len)
    started = time.perf_counter()
    vectors = np.vstack(
        [
            embedder.embed(texts[start : start + 128])
            for start in range(0, len(texts), 128)
        ]
    )
    embed_seconds = time.perf_counter() - started

    started = time.perf_counter()
    BM25Index.build(texts)
    bm25_seconds = time.perf_counter() - started
    records = [_chunk_record(chunk) for chunk in chunks]
    started = time.perf_counter()
    _write_index(work / "stages", records, vectors, embedder, ChunkingConfig(), {})
    write_seconds = time.perf_counter() - started
    return {
        "chunks": len(chunks),
        "read and chunk": read_seconds,
        "embed": embed_seconds,
        "BM25 alone": bm25_seconds,
        "write (BM25 included)": write_seconds,
    }


def intent_accuracy(data: Path, embedder: Embedder) -> tuple[float, float]:
    """Train on BANKING77's training split; return test accuracy, batched and one by one.

    The first figure embeds the test messages in batches, as
    ``bench/intent_bench.py`` does; the second embeds each message alone, as
    the runtime does.
    """
    train_texts, train_labels = read_csv(data / "intent" / "banking77_train.csv")
    test_texts, test_labels = read_csv(data / "intent" / "banking77_test.csv")
    classifier = IntentClassifier.train(
        train_texts, train_labels, embedder, embeddings=embedder.embed(train_texts)
    )
    batched = embedder.embed(test_texts)
    alone = np.vstack([embedder.embed([text]) for text in test_texts])
    return tuple(
        statistics.fmean(
            classifier.predict(vector, text=text).label == label
            for text, vector, label in zip(test_texts, vectors, test_labels)
        )
        for vectors in (batched, alone)
    )


UNTUNED = FIXED_SETTINGS[-1][0]


def compare_quality(
    data: Path, embedders: list[tuple[str, Embedder, float]], work: Path
) -> list[str]:
    """Return Markdown lines with the retrieval and intent figures of each embedder."""
    lines = [
        "## Quality, int8 vs float32",
        "",
        "Same benchmarks as `bench/retrieval_bench.py` (dev tasks, full task "
        "instructions as the query, hybrid retrieval) and `bench/intent_bench.py` "
        "(train on train, report on test).",
        "",
        "| embedder | τ-Banking recall@10, untuned hybrid | τ-Banking nDCG@10, untuned hybrid | StackFAQ nDCG@10, untuned hybrid | StackFAQ nDCG@10, dense | BANKING77 accuracy, test messages batched / one by one |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, embedder, _ in embedders:
        folder = work / f"quality-{label}"
        folder.mkdir()
        tau_lines, _ = bench_tau_banking(data, embedder, folder)
        faq_lines = bench_stackfaq(data, embedder, folder)
        # Untuned rows: tuning noise would hide the embedder's own effect.
        # The full-instruction queries come last.
        tau_hybrid = [line for line in tau_lines if line.startswith(f"| {UNTUNED}")][-1]
        faq_rows = {
            line.split("|")[1].strip(): line
            for line in faq_lines
            if line.startswith("| ")
        }
        recall10, ndcg10 = (cell.strip() for cell in tau_hybrid.split("|")[3:6:2])
        faq_hybrid = faq_rows[UNTUNED].split("|")[5].strip()
        faq_dense = faq_rows["dense"].split("|")[5].strip()
        batched, alone = intent_accuracy(data, embedder)
        lines.append(
            f"| {label} | {recall10} | {ndcg10} | {faq_hybrid} | {faq_dense} | "
            f"{batched * 100:.2f} % / {alone * 100:.2f} % |"
        )
        print(lines[-1], file=sys.stderr)
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = data_parser(__doc__.splitlines()[0], "bench/results/ingest.md")
    parser.add_argument(
        "--skip-float32", action="store_true", help="measure the int8 embedder alone"
    )
    parser.add_argument(
        "--quality",
        action="store_true",
        help="also compare retrieval and intent quality",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    documents = args.data / "tau2" / "banking_knowledge" / "documents"

    started = time.perf_counter()
    command = (
        f".venv/bin/python bench/ingest_bench.py --data {args.data} --out {args.out}"
    )
    command += " --skip-float32" * args.skip_float32 + " --quality" * args.quality
    lines = [
        "# Ingestion benchmark",
        "",
        f"Command: `{command}`",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {machine_description()}.",
        "",
    ]
    embedders = load_embedders(args.skip_float32)
    throughput = [
        "## Cold build of the τ-Banking articles",
        "",
        f"{BUILDS_PER_EMBEDDER} builds per embedder, each into a new folder: load, chunk, "
        "embed, BM25, write. The load average is read after each build; above 2, other "
        "processes shared the 2 cores and chunks/s is a lower bound. Chunks per CPU "
        "second (summed over threads) depends less on that load; twice it estimates the "
        "rate on 2 idle cores if the work splits evenly over both. torch's float32 "
        "threads spin while they wait for each other, which counts as CPU time, so that "
        "column understates the float32 embedder.",
        "",
        "| embedder | name in the manifest | load time s | build | chunks | seconds | chunks/s | chunks per CPU second | load average |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    stage_lines = [
        "## Where a build spends its time",
        "",
        "The same steps as a build, timed one by one (chunks sorted by length, "
        "embedded 128 at a time).",
        "",
        "| embedder | read and chunk s | embed s | BM25 alone s | write, BM25 included, s | load average |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    with tempfile.TemporaryDirectory(prefix="warden-ingest-bench-") as tmp:
        work = Path(tmp)
        for label, embedder, load_seconds in embedders:
            runs = time_cold_builds(documents, embedder, work / label)
            for number, (chunks, seconds, cpu_seconds, load) in enumerate(
                runs, start=1
            ):
                throughput.append(
                    f"| {label} | `{embedder.name}` | {load_seconds:.1f} | {number} | {chunks} | "
                    f"{seconds:.1f} | **{chunks / seconds:.0f}** | {chunks / cpu_seconds:.0f} | "
                    f"{load:.1f} |"
                )
                print(throughput[-1], file=sys.stderr)
            stages = time_stages(documents, embedder, work / label)
            stage_lines.append(
                f"| {label} | {stages['read and chunk']:.2f} | {stages['embed']:.1f} | "
                f"{stages['BM25 alone']:.2f} | {stages['write (BM25 included)']:.2f} | "
                f"{os.getloadavg()[0]:.1f} |"
            )
            print(stage_lines[-1], file=sys.stderr)
        lines += throughput + [""] + stage_lines + [""]
        if args.quality:
            lines += compare_quality(args.data, embedders, work)
    lines.append(
        f"Total benchmark runtime: {time.perf_counter() - started:.0f} s; "
        f"1-minute load average {os.getloadavg()[0]:.1f} at the end."
    )
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
