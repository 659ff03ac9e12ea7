"""Command-line options shared by the benchmarks that read the shared data folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def data_parser(description: str, default_out: str) -> argparse.ArgumentParser:
    """Return a parser with ``--data`` (the shared data folder) and ``--out`` (the results file)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--data", type=Path, default=Path("../shared/data"), help="shared data folder"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(default_out), help="Markdown results file"
    )
    return parser


def write_report(path: Path, lines: list[str]) -> None:
    """Write the Markdown ``lines`` to ``path``, creating its folder, and print them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
