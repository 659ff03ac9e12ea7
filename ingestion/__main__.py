"""Command line: ``python -m ingestion --source DIR_OR_FILE --index DIR``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ingestion.chunking import DEFAULT_MAX_CHARS, ChunkingConfig
from ingestion.errors import IngestionError
from ingestion.loaders import RecordFields


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
        "--no-progress", action="store_true", help="hide the progress bars"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at INFO level"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
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
        )
    except (IngestionError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
