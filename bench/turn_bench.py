"""Wall time of each graph node and of a whole governed turn.

Runs the Emma Smith cancellation (send, pause for approval, approve) on a
private Redis and a fresh SQLite copy, first with a scripted chat model (the
graph's own overhead: Redis checkpoints, SQLite, policy) and then with the
bundled local model. A node's time is the gap between consecutive ``updates``
events of ``graph.stream``; nodes run one after another, so the gap is the
node's work plus its checkpoint write.

Usage: .venv/bin/python bench/turn_bench.py [--scripted-runs 30] [--local-runs 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from langchain_core.messages import HumanMessage
from langgraph.types import Command

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.graph.conftest import CANCEL_MESSAGE, cancel_script  # noqa: E402
from tools.retail import build_database  # noqa: E402
from warden.models import LocalChatModel, ScriptedChatModel, ensure_local_model  # noqa: E402
from warden.redis_server import RedisServer, find_redis_binary  # noqa: E402
from warden.runtime import Warden, open_intent_classifier  # noqa: E402
from warden.settings import EXAMPLE_DOMAIN_DIR, Settings  # noqa: E402


def _timed_stream(warden: Warden, graph_input, thread_id: str, timings: dict[str, list[float]]) -> None:
    config = warden._config(thread_id)
    last = time.perf_counter()
    for update in warden.graph.stream(graph_input, config, context=warden.context, stream_mode="updates"):
        now = time.perf_counter()
        for node in update:
            timings[node].append(now - last)
        last = now


def run_turns(
    settings: Settings, model_factory, runs: int, index, classifier=None
) -> tuple[dict[str, list[float]], list[float]]:
    timings: dict[str, list[float]] = defaultdict(list)
    turns = []
    with Warden.open(settings, chat_model=model_factory(), index=index, intent_classifier=classifier) as warden:
        for run in range(runs):
            warden.context.chat_model = model_factory()
            thread_id = f"bench-{run}-{time.time_ns()}"
            shutil.copy(settings.domain_dir.parent / ".bench-template.sqlite", settings.db_path)
            started = time.perf_counter()
            _timed_stream(warden, {"messages": [HumanMessage(CANCEL_MESSAGE)]}, thread_id, timings)
            request = warden.current_interrupt(thread_id)
            if request is None:
                print(f"run {run}: no approval request; plan was {warden.graph.get_state(warden._config(thread_id)).values.get('plan')}")
                turns.append(time.perf_counter() - started)
                continue
            decisions = {
                a["action_id"]: {"decision": "approve", "reviewer": "alice"} for a in request["actions"]
            }
            _timed_stream(warden, Command(resume=decisions), thread_id, timings)
            turns.append(time.perf_counter() - started)
    return timings, turns


def _row(name: str, values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return f"| {name} | {len(values)} | {statistics.median(values) * 1000:.1f} | {p95 * 1000:.1f} |"


def _machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripted-runs", type=int, default=30, help="turns with the scripted model")
    parser.add_argument("--local-runs", type=int, default=1, help="turns with the bundled model (0 to skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "turn.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        domain = tmp_path / "domain"
        shutil.copytree(EXAMPLE_DOMAIN_DIR, domain)
        build_database(domain / "db.json", tmp_path / ".bench-template.sqlite")
        with RedisServer(tmp_path / "redis", appendonly=False) as server:
            settings = Settings.from_env(
                data_dir=tmp_path, redis_url=server.url, db_path=tmp_path / "retail.sqlite",
                domain_dir=domain, approval_threshold=5000.0, reviewers={"alice": "supervisor"},
            )
            shutil.copy(tmp_path / ".bench-template.sqlite", settings.db_path)
            lines = [
                "# Turn timings",
                "",
                f"Command: `.venv/bin/python bench/turn_bench.py --scripted-runs {args.scripted_runs} "
                f"--local-runs {args.local_runs}`",
                f"Machine: {_machine()}; Redis {subprocess.run([find_redis_binary(), '--version'], capture_output=True, text=True).stdout.split()[2]}",
                f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
                f"1-minute load average at start {os.getloadavg()[0]:.1f}",
                "",
                "One turn = customer message, pause at the approval, one approval, execution, answer.",
                "",
            ]
            timings, turns = run_turns(settings, lambda: ScriptedChatModel(script=cancel_script()), args.scripted_runs, None)
            lines += ["## Scripted model (graph overhead)", "", "| node | n | p50 ms | p95 ms |", "| --- | --- | --- | --- |"]
            lines += [_row(node, values) for node, values in timings.items()]
            lines += [_row("whole turn", turns), ""]

            if args.local_runs:
                from ingestion.embedder import load_default_embedder  # noqa: PLC0415
                from ingestion.index import KnowledgeIndex, build_index  # noqa: PLC0415

                embedder = load_default_embedder()
                build_index(domain / "kb", tmp_path / "index", embedder, progress=False)
                index = KnowledgeIndex.load(tmp_path / "index", embedder)
                model_path = Path(os.environ.get("WARDEN_MODEL_PATH") or ensure_local_model(ROOT / "var" / "models"))
                model = LocalChatModel(model_path=str(model_path), n_threads=os.cpu_count() or 2)
                classifier = open_intent_classifier(dataclasses.replace(settings, data_dir=tmp_path))
                for title, chosen in [("intent by the trained classifier", classifier), ("intent by the model", None)]:
                    timings, turns = run_turns(settings, lambda: model, args.local_runs, index, chosen)
                    lines += [f"## Bundled local model, {title}", "",
                              "Qwen2.5-Coder-1.5B-Instruct Q4_K_M through llama.cpp, 2 threads, real hybrid index.", "",
                              "| node | n | p50 ms | p95 ms |", "| --- | --- | --- | --- |"]
                    lines += [_row(node, values) for node, values in timings.items()]
                    lines += [_row("whole turn", turns), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
