"""Command line: ``python -m ingestion --source DIR_OR_FILE --index DIR`` builds an
index, and ``python -m ingestion tune --index DIR --queries FILE`` tunes its fusion."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ingestion.chunking import DEFAULT_MAX_CHARS, ChunkingConfig
from ingestion.errors import IngestionError
from ingestion.fusion import FUSION_METHODS, FusionConfig
from ingestion.loaders import RecordFields
from ingestion.tuning import DEFAULT_METRIC, METRICS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingestion",
        description="Build or update a hybrid dense + BM25 knowledge index. "
        "Unchanged files are reused, changed files re-embedded, missing files removed.",
    )
    parser.add_argument(
        "--source",
        action="append",
        required=True,
        type=Path,
        metavar="PATH",
        help="file or folder to ingest; repeat for several (Markdown, text, HTML, PDF, JSON, JSONL, CSV)",
    )
    parser.add_argument(
        "--index",
        required=True,
        type=Path,
        metavar="DIR",
        help="index folder to create or update",
    )
    parser.add_argument(
        "--text-field",
        action="append",
        metavar="NAME",
        help="JSON/CSV field that contains the text (default: content, text, body, answer, description)",
    )
    parser.add_argument(
        "--title-field",
        action="append",
        metavar="NAME",
        help="JSON/CSV field that contains the title (default: title, question, subject, name)",
    )
    parser.add_argument(
        "--id-field",
        action="append",
        metavar="NAME",
        help="JSON/CSV field that contains the record id (default: id, doc_id, article_id, ticket_id)",
    )
    parser.add_argument(
        "--max-chars",
        type=int,
        default=DEFAULT_MAX_CHARS,
        metavar="N",
        help=f"maximum chunk length in characters (default {DEFAULT_MAX_CHARS})",
    )
    parser.add_argument(
        "--fusion-method",
        choices=FUSION_METHODS,
        help="hybrid fusion: weighted reciprocal-rank fusion or convex combination "
        "of normalised scores. Giving this, --dense-weight or --rrf-k replaces the "
        "stored fusion settings, with defaults for the others; giving none keeps them",
    )
    parser.add_argument(
        "--dense-weight",
        type=float,
        metavar="W",
        help="dense share of the fusion from 0 to 1; BM25 gets 1 - W (default 0.5)",
    )
    parser.add_argument(
        "--rrf-k",
        type=int,
        metavar="K",
        help="rank offset of reciprocal-rank fusion (default 60)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="hide the progress bars"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at INFO level"
    )
    return parser


def _tune_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingestion tune",
        description="Grid-search the hybrid fusion settings of an index on labelled "
        "queries and store the best in its manifest.",
    )
    parser.add_argument(
        "--index", required=True, type=Path, metavar="DIR", help="index folder to tune"
    )
    parser.add_argument(
        "--queries",
        required=True,
        type=Path,
        metavar="FILE",
        help='JSONL, one {"query": ..., "relevant": [labels], "group": optional} per line',
    )
    parser.add_argument(
        "--match",
        default="source",
        metavar="FIELD",
        help="hit field the labels name: chunk_id, source, or a metadata key such "
        "as record_id (default source)",
    )
    parser.add_argument(
        "--metric",
        default=DEFAULT_METRIC,
        choices=METRICS,
        help=f"metric to maximise (default {DEFAULT_METRIC})",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=0,
        metavar="N",
        help="also estimate the tuned score on held-out queries by N-fold "
        "cross-validation (default 0: off)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the results without changing the manifest",
    )
    return parser


def _fusion_from_args(args: argparse.Namespace) -> FusionConfig | None:
    if args.fusion_method is None and args.dense_weight is None and args.rrf_k is None:
        return None
    defaults = FusionConfig()
    return FusionConfig(
        method=args.fusion_method or defaults.method,
        dense_weight=defaults.dense_weight
        if args.dense_weight is None
        else args.dense_weight,
        rrf_k=defaults.rrf_k if args.rrf_k is None else args.rrf_k,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["tune"]:
        return tune_main(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s %(message)s",
    )
    if args.max_chars < 100:
        print(
            f"error: --max-chars must be at least 100, got {args.max_chars}",
            file=sys.stderr,
        )
        return 2
    missing = [str(path) for path in args.source if not path.exists()]
    if missing:
        print(f"error: source not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        fusion = _fusion_from_args(args)
    except IngestionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    defaults = RecordFields()
    fields = RecordFields(
        text=tuple(args.text_field or defaults.text),
        title=tuple(args.title_field or defaults.title),
        id=tuple(args.id_field or defaults.id),
    )

    from ingestion.embedder import load_default_embedder
    from ingestion.index import build_index

    try:
        report = build_index(
            args.source,
            args.index,
            load_default_embedder(),
            progress=not args.no_progress,
            record_fields=fields,
            chunking=ChunkingConfig(max_chars=args.max_chars),
            fusion=fusion,
        )
    except (IngestionError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.format())
    return 0


def tune_main(argv: list[str]) -> int:
    """Run ``python -m ingestion tune``; return the process exit status."""
    args = _tune_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s %(message)s"
    )
    from datetime import datetime, timezone

    from ingestion.building import save_fusion
    from ingestion.embedder import load_default_embedder
    from ingestion.index import KnowledgeIndex
    from ingestion.tuning import (
        FusionEvaluator,
        cross_validate,
        read_labelled_queries,
        tune_fusion,
    )

    try:
        queries = read_labelled_queries(args.queries)
        index = KnowledgeIndex.load(args.index, load_default_embedder())
    except (IngestionError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    evaluator = FusionEvaluator(index, queries, match=args.match)
    result = tune_fusion(evaluator, metric=args.metric)
    current = evaluator.mean(index.fusion)[args.metric]
    ranked = sorted(result.table, key=lambda entry: -entry[1][args.metric])
    print(
        f"{len(queries)} queries; {len(result.table)} settings; top 10 by {args.metric}:"
    )
    for config, metrics in ranked[:10]:
        print(f"  {metrics[args.metric]:.4f}  {config.describe()}")
    print(f"current setting: {current:.4f}  {index.fusion.describe()}")
    tuning = {
        "queries": len(queries),
        "queries_file": str(args.queries),
        "metric": args.metric,
        "score": round(result.score, 4),
        "previous_score": round(current, 4),
        "tuned_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if args.folds:
        try:
            validation = cross_validate(evaluator, folds=args.folds, metric=args.metric)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        held_out = validation.metrics[args.metric]
        print(f"{args.folds}-fold cross-validated {args.metric}: {held_out:.4f}")
        tuning["cross_validated_score"] = round(held_out, 4)
        tuning["folds"] = args.folds
    if all(metrics[args.metric] == 0.0 for _, metrics in result.table):
        print(
            f"warning: every setting scores {args.metric} 0; check that --match "
            f"{args.match!r} names the field your labels use",
            file=sys.stderr,
        )
    if args.dry_run:
        print(f"best setting (not stored): {result.best.describe()}")
        return 0
    save_fusion(args.index, result.best, tuning=tuning)
    print(f"stored in {args.index / 'manifest.json'}: {result.best.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
