"""Retrieval benchmark: τ-Banking knowledge base, StackFAQ, latency and ingest throughput.

Run from the project root:

    .venv/bin/python bench/retrieval_bench.py --data ../shared/data --out bench/results/retrieval.md

Every index is built in a fresh temporary folder, so the ingest throughput is
measured on a cold build. Runtime is about 10 minutes on 2 cores.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arguments import data_parser, write_report  # noqa: E402
from ingestion import (  # noqa: E402
    Embedder,
    FusionConfig,
    KnowledgeIndex,
    build_index,
    load_default_embedder,
)
from ingestion.building import _write_index  # noqa: E402
from ingestion.chunking import ChunkingConfig  # noqa: E402
from ingestion.tuning import (  # noqa: E402
    FusionEvaluator,
    LabelledQuery,
    cross_validate,
    tune_fusion,
)

CHUNKS_PER_QUERY = 100
FOLDS = 5
FOLD_SEED = 0
# Single retrievers and untuned fusion, as fusion settings over the same scores.
FIXED_SETTINGS = (
    ("bm25", FusionConfig(dense_weight=0.0)),
    ("dense", FusionConfig(dense_weight=1.0)),
    ("hybrid, untuned RRF (default)", FusionConfig()),
)
LATENCY_SIZES = (1_000, 10_000, 100_000)
LATENCY_QUERIES = 200
_ROLE_PREAMBLE = "You are playing the role of a customer contacting a customer service representative agent."
# The scenario part of a task ends where the script turns to verification data
# or behaviour rules.
_SCENARIO_END = re.compile(
    r"^\s*(## |\*\*Verification|Here are your behavior|Your email is|Your user ID|"
    r"\*\*Information you know|\*\*Your .*info)",
    re.M,
)


def scenario_query(instructions: str) -> str:
    """Return the customer's situation: the instructions up to the verification details."""
    match = _SCENARIO_END.search(instructions)
    text = instructions[: match.start()] if match else instructions
    return " ".join(text.replace(_ROLE_PREAMBLE, "").replace("**", "").split())


def fusion_table(
    evaluator: FusionEvaluator, metric: str, columns: Sequence[str]
) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Render bm25, dense, untuned and cross-validated hybrid rows as a Markdown table.

    The tuned row is out-of-fold: each query is ranked with the setting that
    maximised ``metric`` on the other folds, never on its own fold.
    """
    results = {label: evaluator.mean(config) for label, config in FIXED_SETTINGS}
    validation = cross_validate(evaluator, folds=FOLDS, seed=FOLD_SEED, metric=metric)
    tuned_label = f"hybrid, tuned ({FOLDS}-fold cross-validated)"
    results[tuned_label] = validation.metrics
    lines = [
        "| retriever | " + " | ".join(columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    for label, metrics in results.items():
        lines.append(
            f"| {label} | "
            + " | ".join(f"{metrics[name]:.3f}" for name in columns)
            + " |"
        )
        print(f"{label} {metrics}", file=sys.stderr)
    on_all = tune_fusion(evaluator, metric=metric)
    chosen = "; ".join(config.describe() for config in validation.chosen)
    lines += [
        "",
        f"Tuned on {metric}; settings chosen per fold: {chosen}. "
        f"Tuned on all queries (what `python -m ingestion tune` would store): "
        f"{on_all.best.describe()}, {metric} {on_all.score:.3f} in-sample.",
        "",
    ]
    return lines, results


def bench_tau_banking(
    data: Path, embedder: Embedder, work: Path
) -> tuple[list[str], KnowledgeIndex]:
    folder = data / "tau2" / "banking_knowledge"
    report = build_index(folder / "documents", work / "tau", embedder, progress=False)
    index = KnowledgeIndex.load(work / "tau", embedder)
    tasks = json.loads((folder / "tasks_dev.json").read_text(encoding="utf-8"))
    lines = [
        "## τ-Banking knowledge base",
        "",
        f"{len(report.files)} articles, {report.chunk_count} chunks; {len(tasks)} dev tasks "
        f"({sum(len(t['required_documents']) for t in tasks)} gold article ids, "
        f"{statistics.fmean(len(t['required_documents']) for t in tasks):.1f} per task). "
        "A ranking lists articles in order of their best chunk among the top "
        f"{CHUNKS_PER_QUERY} chunks.",
        "",
        f"Cold build: {report.embedded} chunks embedded in {report.seconds:.1f} s "
        f"= **{report.embedded / report.seconds:.0f} chunks/s** (load, chunk, embed, write).",
        "",
    ]
    ceiling = statistics.fmean(
        min(10, len(t["required_documents"])) / len(t["required_documents"])
        for t in tasks
    )
    variants: list[tuple[str, Callable[[str], str]]] = [
        ("scenario (situation paragraphs)", scenario_query),
        ("full instructions", lambda text: text),
    ]
    for label, make_query in variants:
        queries = [
            LabelledQuery(
                make_query(t["user_scenario"]["instructions"]),
                frozenset(t["required_documents"]),
            )
            for t in tasks
        ]
        evaluator = FusionEvaluator(
            index, queries, match="record_id", hits_per_query=CHUNKS_PER_QUERY
        )
        lines += [
            f"Query = {label}, mean {statistics.fmean(len(q.text) for q in queries):.0f} characters.",
            "",
        ]
        table, _ = fusion_table(
            evaluator, "recall@10", ("recall@5", "recall@10", "MRR", "nDCG@10")
        )
        lines += table
    lines += [
        f"Highest recall@10 any ranking can reach here: {ceiling:.3f}, because many tasks "
        "need more than 10 articles.",
        "",
    ]
    return lines, index


def bench_stackfaq(data: Path, embedder: Embedder, work: Path) -> list[str]:
    threads = json.loads(
        (data / "faq" / "stackExchange-FAQ.json").read_text(encoding="utf-8")
    )["root"]["qapair"]
    records = [
        {"id": f"thread-{i}", "question": t["question"], "answer": t["answer"]}
        for i, t in enumerate(threads)
    ]
    source = work / "faq-source"
    source.mkdir()
    (source / "stackfaq.json").write_text(json.dumps(records), encoding="utf-8")
    report = build_index(source, work / "faq", embedder, progress=False)
    index = KnowledgeIndex.load(work / "faq", embedder)
    queries = []
    skipped = 0
    for i, thread in enumerate(threads):
        for rephrasing in thread["rephr"]:
            if rephrasing and re.search(r"\w", rephrasing):
                queries.append(
                    LabelledQuery(rephrasing, frozenset({f"thread-{i}"}), group=str(i))
                )
            else:
                skipped += 1
    evaluator = FusionEvaluator(
        index, queries, match="record_id", hits_per_query=CHUNKS_PER_QUERY
    )
    lines = [
        "## StackFAQ",
        "",
        f"{len(threads)} threads indexed as question + answers ({report.chunk_count} chunks); "
        f"{len(queries)} rephrasings as queries ({skipped} empty or without a word character left out). "
        "Folds split by thread, so no fold is tuned on a rephrasing of a thread it is scored on.",
        "",
    ]
    table, _ = fusion_table(evaluator, "nDCG@10", ("hit@1", "hit@5", "MRR", "nDCG@10"))
    lines += table
    lines += ["Published BM25 over question and answer: nDCG@10 0.783.", ""]
    return lines


def bench_latency(
    source_index: KnowledgeIndex, embedder: Embedder, queries: list[str], work: Path
) -> list[str]:
    base_dir = work / "tau"
    manifest = json.loads((base_dir / "manifest.json").read_text(encoding="utf-8"))
    data_dir = base_dir / manifest["data_dir"]
    base_chunks = [
        json.loads(line)
        for line in (data_dir / "chunks.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    base_vectors = np.load(data_dir / "vectors.npy", allow_pickle=False)
    lines = [
        "## Search latency",
        "",
        f"Indexes of N chunks made by repeating the τ-Banking chunks under distinct ids and "
        f"sources; {len(queries)} StackFAQ rephrasings as queries, after 10 warm-up queries. "
        "`search` includes embedding the query; the embedding alone is shown apart. "
        "CPU time sums both threads, so it can exceed wall time.",
        "",
        "| chunks | search p50 ms | search p95 ms | search CPU time p50 / p95 ms | query embedding alone p50 ms | search without embedding p95 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    embed_times = []
    for query in queries[:10] + queries:
        started = time.perf_counter()
        embedder.embed([query])
        embed_times.append((time.perf_counter() - started) * 1000)
    embed_times = embed_times[10:]
    for size in LATENCY_SIZES:
        records = []
        for copy in range(math.ceil(size / len(base_chunks))):
            for record in base_chunks:
                if len(records) == size:
                    break
                clone = dict(
                    record,
                    id=f"{record['id']}-{copy}",
                    source=f"copy{copy}/{record['source']}",
                )
                clone["metadata"] = dict(record["metadata"], source=clone["source"])
                records.append(clone)
        vectors = np.tile(base_vectors, (math.ceil(size / len(base_vectors)), 1))[:size]
        target = work / f"latency-{size}"
        _write_index(target, records, vectors, embedder, ChunkingConfig(), {})
        index = KnowledgeIndex.load(target, embedder)
        cached = {query: embedder.embed([query]) for query in queries}
        times, bare, cpu = [], [], []
        for query in queries[:10] + queries:
            started = time.perf_counter()
            cpu_started = time.process_time()
            index.search(query, k=4)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - cpu_started) * 1000)
        real_embed = embedder.embed
        embedder.embed = lambda texts: (
            cached[texts[0]]
            if len(texts) == 1 and texts[0] in cached
            else real_embed(texts)
        )
        try:
            for query in queries[:10] + queries:
                started = time.perf_counter()
                index.search(query, k=4)
                bare.append((time.perf_counter() - started) * 1000)
        finally:
            del embedder.embed
        times, bare, cpu = times[10:], bare[10:], cpu[10:]
        lines.append(
            f"| {size:,} | {np.percentile(times, 50):.1f} | {np.percentile(times, 95):.1f} | "
            f"{np.percentile(cpu, 50):.1f} / {np.percentile(cpu, 95):.1f} | "
            f"{np.percentile(embed_times, 50):.1f} | {np.percentile(bare, 95):.1f} |"
        )
        print(lines[-1], file=sys.stderr)
    lines.append("")
    return lines


def machine_description() -> str:
    import torch

    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="strict").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{model}, {os.cpu_count()} cores visible, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}, "
        f"1-minute load average {os.getloadavg()[0]:.1f} at start"
    )


def main(argv: list[str] | None = None) -> int:
    parser = data_parser(__doc__.splitlines()[0], "bench/results/retrieval.md")
    parser.add_argument(
        "--skip-latency", action="store_true", help="skip the 1k/10k/100k latency runs"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    embedder = load_default_embedder()
    started = time.perf_counter()
    lines = [
        "# Retrieval benchmark",
        "",
        f"Command: `.venv/bin/python bench/retrieval_bench.py --data {args.data} --out {args.out}"
        f"{' --skip-latency' if args.skip_latency else ''}`",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {machine_description()}.",
        f"Embedder: {embedder.name} (dimension {embedder.dimension}), CPU.",
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp:
        work = Path(tmp)
        tau_lines, tau_index = bench_tau_banking(args.data, embedder, work)
        lines += tau_lines
        lines += bench_stackfaq(args.data, embedder, work)
        if not args.skip_latency:
            threads = json.loads(
                (args.data / "faq" / "stackExchange-FAQ.json").read_text(
                    encoding="utf-8"
                )
            )
            queries = [
                r
                for t in threads["root"]["qapair"]
                for r in t["rephr"]
                if r and re.search(r"\w", r)
            ]
            lines += bench_latency(tau_index, embedder, queries[:LATENCY_QUERIES], work)
    lines.append(
        f"Total benchmark runtime: {time.perf_counter() - started:.0f} s; "
        f"1-minute load average {os.getloadavg()[0]:.1f} at the end. The machine is shared, "
        "so a load average above 2 means other processes competed for the 2 cores and "
        "wall-clock numbers are pessimistic."
    )
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
