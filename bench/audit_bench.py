"""Benchmark the audit log: cost per support turn, Redis memory per event, and verify speed.

Measures three things on this machine. The first is the wall time of support
turns with the audit log on and off, on the scripted model, real Redis and
SQLite: a read-only turn (two lookups) and an approval turn (send, then a
reviewer rejects). Then comes Redis ``MEMORY USAGE`` per audit event. Last is
append and ``verify_all`` throughput over many threads generated directly
through ``AuditLog.append``. Writes bench/results/audit.md.

Run: .venv/bin/python bench/audit_bench.py [--turns N] [--threads N] [--events N] [--output PATH]

It starts its own Redis server on a free 127.0.0.1 port.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import langgraph
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.retail import build_database  # noqa: E402
from warden.audit import AuditLog  # noqa: E402
from warden.models import ScriptedChatModel  # noqa: E402
from warden.redis_server import RedisServer  # noqa: E402
from warden.runtime import Warden  # noqa: E402
from warden.settings import EXAMPLE_DOMAIN_DIR, Settings  # noqa: E402

EMMA = {"first_name": "Emma", "last_name": "Smith", "zip": "10192"}
HELLO = "Hi, this is Emma Smith, zip code 10192."
READ_SCRIPT = {
    "IntentOutput": [{"intent": "order_question", "entities": {"first_name": "Emma", "last_name": "Smith"}}],
    "PlanOutput": [{"steps": [
        {"tool": "find_user_id_by_name_zip", "arguments": EMMA, "why": "authenticate"},
        {"tool": "get_order_details", "arguments": {"order_id": "#W2417020"}, "why": "read the order"},
    ]}],
    "text": ["Your order #W2417020 is pending."],
}
WRITE_SCRIPT = {
    "IntentOutput": [{"intent": "cancel_order", "entities": {"first_name": "Emma", "last_name": "Smith"}}],
    "PlanOutput": [{"steps": [
        {"tool": "find_user_id_by_name_zip", "arguments": EMMA, "why": "authenticate"},
        {"tool": "cancel_pending_order", "arguments": {"order_id": "#W2417020", "reason": "no longer needed"},
         "why": "the customer asked"},
    ]}],
    "text": ["I could not cancel the order."],
}


class NullAudit:
    """Drops every event: the baseline without auditing."""

    def append(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def read(self, thread_id: str) -> list[Any]:
        return []


def _open(settings: Settings, script: dict, audited: bool) -> tuple[Any, Warden]:
    manager = Warden.open(settings, chat_model=ScriptedChatModel(script=script), index=None)
    warden = manager.__enter__()
    if not audited:
        warden.ledger.audit = NullAudit()
        warden.context = dataclasses.replace(warden.context, audit=None)
    return manager, warden


def _turn_times(settings: Settings, turns: int, audited: bool, kind: str) -> list[float]:
    manager, warden = _open(settings, READ_SCRIPT if kind == "read" else WRITE_SCRIPT, audited)
    label = "on" if audited else "off"
    times = []
    try:
        for number in range(turns):
            thread_id = f"bench-{kind}-{label}-{number}"
            # Clearing the call list makes each turn start at the script's first outputs.
            warden.context.chat_model.calls.clear()
            started = time.perf_counter()
            if kind == "read":
                warden.send(thread_id, f"{HELLO} What is the status of order #W2417020?")
            else:
                [action] = warden.send(thread_id, f"{HELLO} Please cancel #W2417020.").pending
                warden.decide(thread_id, {action.action_id: {"decision": "reject", "reason": "bench", "reviewer": "alice"}})
            times.append(time.perf_counter() - started)
    finally:
        manager.__exit__(None, None, None)
    return times


def _memory_per_event(client: redis.Redis, tenant: str) -> tuple[int, int]:
    log = AuditLog(client, tenant)
    events = 0
    total = 0
    for thread_id in log.thread_ids():
        for key in log.keys(thread_id):
            total += client.memory_usage(key, samples=0) or 0
        events += (log.head(thread_id) or {"count": 0})["count"]
    return total, events


def _verify_bench(client: redis.Redis, threads: int, events: int) -> dict[str, float]:
    log = AuditLog(client, "verifybench")
    data = {"tool": "get_order_details", "arguments": {"order_id": "#W2417020"}, "status": "done", "output": {"status": "pending"}}
    started = time.perf_counter()
    for thread in range(threads):
        for number in range(events):
            log.append(f"v-{thread}", "tool_result", data, event_id=f"e{number}", turn=1, node="run_lookups")
    append_seconds = time.perf_counter() - started
    started = time.perf_counter()
    reports = log.verify_all()
    verify_seconds = time.perf_counter() - started
    broken = sum(1 for report in reports if not report.ok)
    if broken or len(reports) != threads:
        raise RuntimeError(f"verify found {broken} broken of {len(reports)} threads; expected {threads} intact")
    return {"append_seconds": append_seconds, "verify_seconds": verify_seconds, "appends": threads * events}


def _stats(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"{statistics.median(ordered) * 1000:.1f} / {p95 * 1000:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=40, help="turns per variant (default: 40)")
    parser.add_argument("--threads", type=int, default=10_000, help="threads generated for the verify run (default: 10000)")
    parser.add_argument("--events", type=int, default=8, help="events per generated thread (default: 8)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "audit.md"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    server = RedisServer(workdir / "redis", appendonly=False).start()
    client = redis.Redis.from_url(server.url)
    load_start = os.getloadavg()[0]
    redis_version = client.info("server")["redis_version"]
    try:
        template = workdir / "template.sqlite"
        build_database(EXAMPLE_DOMAIN_DIR / "db.json", template)
        results: dict[str, dict[str, list[float]]] = {}
        for kind in ("read", "write"):
            results[kind] = {"on": [], "off": []}
            # Interleaved rounds, so drift in machine load hits both variants alike.
            for _round in range(4):
                for label, audited in (("off", False), ("on", True)):
                    db_path = workdir / f"{kind}-{label}.sqlite"
                    shutil.copy(template, db_path)
                    settings = Settings.from_env(
                        data_dir=workdir, redis_url=server.url, db_path=db_path, index_dir=workdir / "index",
                        chat_model="scripted", reviewers={"alice": "supervisor"}, tenant=f"bench{label}",
                    )
                    results[kind][label] += _turn_times(settings, max(1, args.turns // 4), audited, kind)
        memory, events = _memory_per_event(client, "benchon")
        verify = _verify_bench(client, args.threads, args.events)
    finally:
        client.close()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    load_end = os.getloadavg()[0]

    lines = [
        "# Audit log benchmark",
        "",
        f"Command: `.venv/bin/python bench/audit_bench.py --turns {args.turns} --threads {args.threads} --events {args.events}`",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        "Machine:",
        "",
        f"- CPU: {_cpu_name()}, nproc {os.cpu_count()}",
        f"- Python {platform.python_version()}, langgraph {_version(langgraph)}, redis-py {redis.__version__}",
        f"- Redis server {redis_version}, on 127.0.0.1 loopback, no persistence",
        f"- 1-minute load average {load_start:.2f} at the start and {load_end:.2f} at the end (other work shared the machine)",
        "",
        "## Cost per turn",
        "",
        "Wall time of one turn on the scripted model, real Redis checkpoints and SQLite, with the",
        "audit log on and off (off: no node events, ledger events dropped). A read turn runs two",
        "lookups and answers (8 events); an approval turn sends, pauses and resumes with a reject",
        f"(12 events). {args.turns} turns per variant in 4 interleaved rounds.",
        "",
        "| turn | audit off p50 / p95 ms | audit on p50 / p95 ms | median overhead |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind, name in (("read", "read turn"), ("write", "approval turn")):
        off, on = results[kind]["off"], results[kind]["on"]
        overhead = statistics.median(on) - statistics.median(off)
        lines.append(
            f"| {name} | {_stats(off)} | {_stats(on)} | {overhead * 1000:+.1f} ms "
            f"({overhead / statistics.median(off) * 100:+.0f}%) |"
        )
    per_event = {
        kind: (statistics.median(results[kind]["on"]) - statistics.median(results[kind]["off"])) / count
        for kind, count in (("read", 8), ("write", 12))
    }
    lines += [
        "",
        f"Median overhead per event: {per_event['read'] * 1000:.2f} ms (read turn), "
        f"{per_event['write'] * 1000:.2f} ms (approval turn). An append is one round trip to the append",
        "script when the thread's head is cached (two otherwise), one more SADD once the customer is",
        "known, plus redaction, canonical JSON and three sha256 in Python.",
        "",
        "## Redis memory",
        "",
        f"`MEMORY USAGE` (samples=0) summed over the audit keys of the audited turns: {memory:,} bytes for",
        f"{events:,} events, {memory / max(events, 1):,.0f} bytes per event, stream, head, dedup and data hashes included.",
        "",
        "## Append and verify throughput",
        "",
        f"{args.threads:,} threads of {args.events} events each (about 200 bytes of data per event),",
        "appended one at a time through `AuditLog.append`, then checked with `verify_all`",
        "(SCAN, pipelined reads in batches of 200 threads, sha256 of every entry and its data).",
        "",
        "| operation | total s | rate |",
        "| --- | ---: | ---: |",
        f"| append | {verify['append_seconds']:.1f} | {verify['appends'] / verify['append_seconds']:,.0f} events/s |",
        f"| verify_all | {verify['verify_seconds']:.1f} | {args.threads / verify['verify_seconds']:,.0f} threads/s, "
        f"{verify['appends'] / verify['verify_seconds']:,.0f} entries/s |",
        "",
    ]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: Any) -> str:
    from importlib.metadata import version  # noqa: PLC0415

    try:
        return version(module.__name__)
    except Exception:  # noqa: BLE001 - a missing version only blanks one line of the report
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
