"""Assemble docs/benchmarks.md from the summary below and each bench/results/*.md.

Every results file is written by its own benchmark script, with the command,
date and machine of its run; this script only joins them under one page.

Usage: .venv/bin/python bench/collect_results.py
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ORDER = ["turn", "install", "checkpoint", "governance", "audit", "retrieval", "intent", "service"]


def _demote(markdown: str) -> str:
    lines = []
    for line in markdown.splitlines():
        lines.append("#" + line if line.startswith("#") else line)
    return "\n".join(lines)


def main() -> None:
    summary = (RESULTS / "summary.md").read_text()
    parts = [summary.rstrip(), ""]
    names = [name for name in ORDER if (RESULTS / f"{name}.md").exists()]
    names += sorted(p.stem for p in RESULTS.glob("*.md") if p.stem not in ORDER and p.stem != "summary")
    for name in names:
        parts += [_demote((RESULTS / f"{name}.md").read_text()).rstrip(), ""]
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(parts))
    print(f"wrote docs/benchmarks.md from {len(names)} results files")


if __name__ == "__main__":
    main()
