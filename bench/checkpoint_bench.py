"""Benchmark the Redis checkpoint saver against LangGraph's other savers.

Measures four things on this machine in one run. The first is end-to-end runs/s of
a 5-node graph with a parallel branch and one approval interrupt. Then come the
p50/p95 latencies of put, put_writes and get_tuple, async runs/s at 1, 8 and 64
concurrent threads, and Redis memory per checkpoint. Writes
bench/results/checkpoint.md.

Run: .venv/bin/python bench/checkpoint_bench.py [--runs N] [--ops N] [--output PATH]

It starts its own Redis servers on free 127.0.0.1 ports and uses the machine's
PostgreSQL at POSTGRES_URL in a schema it creates and drops.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import operator
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, TypedDict

import psycopg
import redis
import redis.asyncio
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from redis.utils import HIREDIS_AVAILABLE

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from warden.checkpoint import RedisSaver  # noqa: E402
from warden.redis_server import RedisServer, find_redis_binary  # noqa: E402

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
CONCURRENCY = (1, 8, 64)
FLOOR_NAME = "round-trip floor: InMemorySaver + 1 PING per write"
REFERENCE_NOTE = (
    "Reference from an earlier measurement on this kind of machine, not re-run here "
    "(it needs Redis Stack modules): the official langgraph-checkpoint-redis saver "
    "reached 100 runs/s against 194 for InMemorySaver, with put 0.42 ms and "
    "get_tuple 0.26 ms."
)


# -- the graph ----------------------------------------------------------------------


class BenchState(TypedDict, total=False):
    request: str
    intent: str
    context: list[str]
    policy: str
    plan: list[dict]
    decision: str
    log: Annotated[list[str], operator.add]


def build_graph(checkpointer: Any):
    """capture_intent, then retrieve_context and check_policy in parallel, then
    plan_actions and request_approval, which pauses once."""

    def capture_intent(state: BenchState) -> dict:
        return {"intent": "cancel_order", "log": ["intent"]}

    def retrieve_context(state: BenchState) -> dict:
        return {"context": ["Pending orders can be cancelled."] * 3, "log": ["context"]}

    def check_policy(state: BenchState) -> dict:
        return {"policy": "refunds above 100 EUR need approval", "log": ["policy"]}

    def plan_actions(state: BenchState) -> dict:
        steps = [
            {"tool": "cancel_pending_order", "arguments": {"order_id": "#W2417020"}}
        ]
        return {"plan": steps, "log": ["plan"]}

    def request_approval(state: BenchState) -> dict:
        decision = interrupt({"plan": state["plan"]})
        return {"decision": decision, "log": ["approval"]}

    builder = StateGraph(BenchState)
    for node in (
        capture_intent,
        retrieve_context,
        check_policy,
        plan_actions,
        request_approval,
    ):
        builder.add_node(node.__name__, node)
    builder.add_edge(START, "capture_intent")
    builder.add_edge("capture_intent", "retrieve_context")
    builder.add_edge("capture_intent", "check_policy")
    builder.add_edge(["retrieve_context", "check_policy"], "plan_actions")
    builder.add_edge("plan_actions", "request_approval")
    builder.add_edge("request_approval", END)
    return builder.compile(checkpointer=checkpointer)


REQUEST = {
    "request": "Please cancel order #W2417020, I found a better deal.",
    "log": [],
}


def run_once(graph, thread_id: str) -> None:
    config = {"configurable": {"thread_id": thread_id}}
    graph.invoke(REQUEST, config)
    graph.invoke(Command(resume="approved"), config)


async def arun_once(graph, thread_id: str) -> None:
    config = {"configurable": {"thread_id": thread_id}}
    await graph.ainvoke(REQUEST, config)
    await graph.ainvoke(Command(resume="approved"), config)


# -- savers under test --------------------------------------------------------------


@dataclass
class Contender:
    name: str
    sync: Callable[[], Any]
    asynchronous: Callable[[], Any] | None = None
    redis_url: str | None = None
    key_pattern: str | None = None


@dataclass
class Result:
    name: str
    runs_per_second: float = 0.0
    latency_ms: dict[str, tuple[float, float]] = field(default_factory=dict)
    concurrent: dict[int, float] = field(default_factory=dict)
    bytes_per_checkpoint: float | None = None
    error: str | None = None


def _use_generic_path(saver: RedisSaver) -> RedisSaver:
    """Send the saver's scripts through redis-py's generic command path."""
    # The runners fall back to redis.Script objects when they have no pool, as
    # they do for cluster clients.
    for runner in (saver._run, saver._arun):
        if runner is not None:
            runner._pool = None
    return saver


def warden_contender(name: str, url: str, *, generic_path: bool = False) -> Contender:
    """Return the warden saver as a contender; ``generic_path`` sends its scripts through redis-py's command path."""
    adjust = _use_generic_path if generic_path else (lambda saver: saver)

    @contextmanager
    def sync() -> Iterator[BaseCheckpointSaver]:
        client = redis.Redis.from_url(url)
        try:
            yield adjust(RedisSaver(client))
        finally:
            client.close()

    @asynccontextmanager
    async def asynchronous() -> AsyncIterator[BaseCheckpointSaver]:
        saver = adjust(RedisSaver.from_url(url))
        try:
            yield saver
        finally:
            saver.client.close()
            await saver.aclient.aclose()

    return Contender(name, sync, asynchronous, url, "warden:cp:*")


def memory_contender() -> Contender:
    @contextmanager
    def sync() -> Iterator[BaseCheckpointSaver]:
        yield InMemorySaver()

    @asynccontextmanager
    async def asynchronous() -> AsyncIterator[BaseCheckpointSaver]:
        yield InMemorySaver()

    return Contender("InMemorySaver", sync, asynchronous)


class RoundTripFloorSaver(InMemorySaver):
    """InMemorySaver that waits for one bare Redis PING per put and put_writes.

    It stores nothing in Redis and reads for free, so its runs/s estimate the
    best that a saver can reach when it waits for Redis to acknowledge each
    write. Each thread pings on its own raw socket, which costs less client CPU
    than a Redis client library.
    """

    PING = b"*1\r\n$4\r\nPING\r\n"

    def __init__(self, port: int) -> None:
        super().__init__()
        self._port = port
        self._local = threading.local()
        self._sockets: list[socket.socket] = []

    def _ping(self) -> None:
        sock = getattr(self._local, "sock", None)
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", self._port), timeout=5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.sock = sock
            self._sockets.append(sock)
        sock.sendall(self.PING)
        reply = sock.recv(64)
        if reply != b"+PONG\r\n":
            raise OSError(f"unexpected reply to PING: {reply!r}")

    def put(self, *args: Any, **kwargs: Any) -> Any:
        self._ping()
        return super().put(*args, **kwargs)

    def put_writes(self, *args: Any, **kwargs: Any) -> None:
        self._ping()
        super().put_writes(*args, **kwargs)

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


def floor_contender(port: int) -> Contender:
    """Return the round-trip floor as a sync-only contender, because its blocking ping would stall an event loop."""

    @contextmanager
    def sync() -> Iterator[BaseCheckpointSaver]:
        saver = RoundTripFloorSaver(port)
        try:
            yield saver
        finally:
            saver.close()

    return Contender(FLOOR_NAME, sync)


def sqlite_contender(directory: Path) -> Contender:
    from langgraph.checkpoint.sqlite import SqliteSaver  # noqa: PLC0415
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # noqa: PLC0415

    @contextmanager
    def sync() -> Iterator[BaseCheckpointSaver]:
        path = directory / f"sync-{uuid.uuid4().hex}.sqlite"
        connection = sqlite3.connect(path, check_same_thread=False)
        try:
            yield SqliteSaver(connection)
        finally:
            connection.close()

    @asynccontextmanager
    async def asynchronous() -> AsyncIterator[BaseCheckpointSaver]:
        path = directory / f"async-{uuid.uuid4().hex}.sqlite"
        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            yield saver

    return Contender("SqliteSaver (file)", sync, asynchronous)


def postgres_contender(schema_url: str) -> Contender:
    from langgraph.checkpoint.postgres import PostgresSaver  # noqa: PLC0415
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver  # noqa: PLC0415

    @contextmanager
    def sync() -> Iterator[BaseCheckpointSaver]:
        with PostgresSaver.from_conn_string(schema_url) as saver:
            saver.setup()
            yield saver

    @asynccontextmanager
    async def asynchronous() -> AsyncIterator[BaseCheckpointSaver]:
        async with AsyncPostgresSaver.from_conn_string(schema_url) as saver:
            await saver.setup()
            yield saver

    return Contender("PostgresSaver", sync, asynchronous)


def plainredis_contender(url: str) -> Contender:
    from langgraph_checkpoint_plainredis import (  # noqa: PLC0415
        AsyncRedisSaver as PlainAsyncSaver,
    )
    from langgraph_checkpoint_plainredis import (  # noqa: PLC0415
        RedisSaver as PlainSaver,
    )

    # Its own from-URL clients use redis-py's default pool, which raises once 100
    # connections are busy; give it the same waiting pool as the warden saver.
    @contextmanager
    def sync() -> Iterator[BaseCheckpointSaver]:
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=5)
        saver = PlainSaver(redis.Redis.from_pool(pool))
        try:
            yield saver
        finally:
            saver.close()

    @asynccontextmanager
    async def asynchronous() -> AsyncIterator[BaseCheckpointSaver]:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=64, timeout=5
        )
        saver = PlainAsyncSaver(redis.asyncio.Redis.from_pool(pool))
        try:
            yield saver
        finally:
            await saver.aclose()

    return Contender("plainredis RedisSaver", sync, asynchronous, url, "lg:*")


# -- measurements -------------------------------------------------------------------


def measure_runs(
    contenders: list[Contender], runs: int, rounds: int = 10
) -> dict[str, float]:
    """Return sync runs/s per contender, measured in interleaved rounds.

    Every round runs ``runs / rounds`` threads on each saver in turn, so a change in
    machine load during the benchmark affects all savers alike.
    """
    per_round = max(1, runs // rounds)
    elapsed = {contender.name: 0.0 for contender in contenders}
    with ExitStack() as stack:
        graphs = {}
        for contender in contenders:
            graph = build_graph(stack.enter_context(contender.sync()))
            for index in range(5):
                run_once(graph, f"warmup-{uuid.uuid4().hex}-{index}")
            graphs[contender.name] = graph
        for round_index in range(rounds):
            for name, graph in graphs.items():
                gc.collect()
                started = time.perf_counter()
                for index in range(per_round):
                    run_once(graph, f"run-{round_index}-{index}")
                elapsed[name] += time.perf_counter() - started
    return {name: per_round * rounds / seconds for name, seconds in elapsed.items()}


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return statistics.median(ordered) * 1000, p95 * 1000


def measure_ops(contender: Contender, ops: int) -> dict[str, tuple[float, float]]:
    """Time put, put_writes and get_tuple on a chain shaped like the graph's state."""
    timings: dict[str, list[float]] = {"put": [], "put_writes": [], "get_tuple": []}
    values = {
        "request": REQUEST["request"],
        "intent": "cancel_order",
        "context": ["Pending orders can be cancelled."] * 3,
        "plan": [
            {"tool": "cancel_pending_order", "arguments": {"order_id": "#W2417020"}}
        ],
        "log": ["intent", "context", "policy", "plan"],
    }
    with contender.sync() as saver:
        config = {
            "configurable": {
                "thread_id": f"ops-{uuid.uuid4().hex}",
                "checkpoint_ns": "",
            }
        }
        versions = {channel: saver.get_next_version(None, None) for channel in values}
        new_versions = dict(versions)
        for step in range(ops):
            checkpoint = {
                "v": 1,
                "id": str(uuid6(clock_seq=step)),
                "ts": datetime.now(timezone.utc).isoformat(),
                "channel_values": values,
                "channel_versions": dict(versions),
                "versions_seen": {"plan_actions": dict(versions)},
                "updated_channels": list(new_versions),
            }
            metadata = {"source": "loop", "step": step, "parents": {}}
            started = time.perf_counter()
            config = saver.put(config, checkpoint, metadata, new_versions)
            timings["put"].append(time.perf_counter() - started)

            writes = [("log", ["approval"]), ("decision", "approved")]
            started = time.perf_counter()
            saver.put_writes(
                config, writes, f"task-{step}", "~__pregel_pull, request_approval"
            )
            timings["put_writes"].append(time.perf_counter() - started)

            latest = {"configurable": {**config["configurable"]}}
            latest["configurable"].pop("checkpoint_id")
            started = time.perf_counter()
            saver.get_tuple(latest)
            timings["get_tuple"].append(time.perf_counter() - started)

            for channel in ("log", "plan"):
                versions[channel] = saver.get_next_version(versions[channel], None)
            new_versions = {channel: versions[channel] for channel in ("log", "plan")}
    return {name: _percentiles(samples) for name, samples in timings.items()}


async def measure_concurrent(
    contender: Contender, level: int, total_runs: int
) -> float:
    async with contender.asynchronous() as saver:
        graph = build_graph(saver)
        await arun_once(graph, f"warmup-{level}-{uuid.uuid4().hex}")
        per_worker = max(1, total_runs // level)
        prefix = uuid.uuid4().hex

        async def worker(worker_id: int) -> None:
            for index in range(per_worker):
                await arun_once(graph, f"c{level}-{prefix}-{worker_id}-{index}")

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(level)))
        return per_worker * level / (time.perf_counter() - started)


def measure_memory(contender: Contender, runs: int) -> float | None:
    """Redis MEMORY USAGE of every key of fresh threads, per stored checkpoint."""
    if contender.redis_url is None:
        return None
    client = redis.Redis.from_url(contender.redis_url)
    client.flushdb()
    with contender.sync() as saver:
        graph = build_graph(saver)
        for index in range(runs):
            run_once(graph, f"memory-{index}")
        checkpoints = (
            sum(1 for _ in saver.list(None))
            if isinstance(saver, RedisSaver)
            else (
                sum(
                    len(
                        list(saver.list({"configurable": {"thread_id": f"memory-{i}"}}))
                    )
                    for i in range(runs)
                )
            )
        )
    total = sum(
        client.memory_usage(key, samples=0) or 0
        for key in client.scan_iter(match=contender.key_pattern, count=1000)
    )
    client.flushdb()
    client.close()
    return total / checkpoints


# -- report -------------------------------------------------------------------------


def machine_summary(redis_url: str) -> list[str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    client = redis.Redis.from_url(redis_url)
    version = client.info("server")["redis_version"]
    client.close()
    import langgraph.version  # noqa: PLC0415

    return [
        f"- CPU: {cpu}, nproc {nproc}",
        f"- Python {platform.python_version()}, "
        f"langgraph {langgraph.version.__version__}, "
        f"redis-py {redis.__version__}, hiredis parser "
        f"{'on' if HIREDIS_AVAILABLE else 'off'}",
        f"- Redis server {version} ({find_redis_binary()}), on 127.0.0.1 loopback",
    ]


def render(results: list[Result], machine: list[str], args: argparse.Namespace) -> str:
    memory = next(r for r in results if r.name == "InMemorySaver")
    lines = [
        "# Checkpoint saver benchmark",
        "",
        f"Command: `.venv/bin/python bench/checkpoint_bench.py --runs {args.runs} "
        f"--ops {args.ops} --concurrent-runs {args.concurrent_runs}`",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        "Machine:",
        "",
        *machine,
        "",
        "A run is one thread through the 5-node graph (intent, retrieval and policy in "
        "parallel, plan, approval): `invoke` until the interrupt, then `invoke` with "
        "`Command(resume=...)`. Sync runs/s come from 10 interleaved rounds over all "
        "savers. Latencies are single calls from one client; get_tuple reads the "
        "latest checkpoint of a thread that has its writes.",
        "",
        f"The row \"{FLOOR_NAME}\" stores nothing in Redis: it is InMemorySaver "
        "waiting for one PING on a raw socket per `put` and `put_writes`, with free "
        "reads. Its runs/s estimate the best that a saver can reach when it waits "
        "for Redis to acknowledge every write.",
        "",
        "## Sync API",
        "",
        "| saver | runs/s | vs InMemorySaver | put p50/p95 ms | put_writes p50/p95 ms "
        "| get_tuple p50/p95 ms | bytes per checkpoint |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        if result.error:
            lines.append(f"| {result.name} | failed: {result.error} | | | | | |")
            continue
        cells = [
            f"{p50:.3f} / {p95:.3f}"
            for p50, p95 in (
                result.latency_ms[op] for op in ("put", "put_writes", "get_tuple")
            )
        ]
        ratio = result.runs_per_second / memory.runs_per_second
        size = (
            f"{result.bytes_per_checkpoint:,.0f}"
            if result.bytes_per_checkpoint
            else "n/a"
        )
        lines.append(
            f"| {result.name} | {result.runs_per_second:.1f} | {ratio:.2f}x | "
            + " | ".join(cells)
            + f" | {size} |"
        )
    lines += [
        "",
        "## Async API, concurrent threads",
        "",
        "runs/s with N threads in flight at once on one event loop "
        f"({args.concurrent_runs} runs per level).",
        "",
        "| saver | " + " | ".join(f"{n} threads" for n in CONCURRENCY) + " |",
        "| --- | " + " | ".join("---:" for _ in CONCURRENCY) + " |",
    ]
    for result in results:
        if result.concurrent:
            cells = [
                f"{result.concurrent[n]:.1f}" if n in result.concurrent else "failed"
                for n in CONCURRENCY
            ]
            lines.append(f"| {result.name} | " + " | ".join(cells) + " |")
    lines += ["", REFERENCE_NOTE, ""]
    return "\n".join(lines)


def run_contender(
    contender: Contender, args: argparse.Namespace, runs_per_second: float
) -> Result:
    result = Result(contender.name, runs_per_second=runs_per_second)
    print(f"benchmarking {contender.name} ...", flush=True)
    try:
        result.latency_ms = measure_ops(contender, args.ops)
        if contender.asynchronous is not None:
            for level in CONCURRENCY:
                result.concurrent[level] = asyncio.run(
                    measure_concurrent(contender, level, args.concurrent_runs)
                )
        result.bytes_per_checkpoint = measure_memory(contender, 20)
    except (OSError, psycopg.Error, redis.RedisError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        print(f"  {contender.name} failed: {result.error}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="graph runs per saver")
    parser.add_argument(
        "--ops", type=int, default=2000, help="calls per latency sample"
    )
    parser.add_argument(
        "--concurrent-runs",
        type=int,
        default=256,
        help="async runs per concurrency level",
    )
    parser.add_argument(
        "--output", type=Path, default=REPO_ROOT / "bench" / "results" / "checkpoint.md"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="checkpoint-bench-"))
    fast = RedisServer(work / "redis", appendonly=False).start()
    durable = RedisServer(work / "redis-aof", appendonly=True).start()
    plain = RedisServer(work / "redis-plain", appendonly=False).start()
    schema = f"bench_checkpoint_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    admin.execute(f'CREATE SCHEMA "{schema}"')
    schema_url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    try:
        contenders = [
            memory_contender(),
            warden_contender("warden RedisSaver", fast.url),
            warden_contender(
                "warden RedisSaver, redis-py command path",
                fast.url,
                generic_path=True,
            ),
            warden_contender("warden RedisSaver, AOF fsync always", durable.url),
            floor_contender(fast.port),
            plainredis_contender(plain.url),
            sqlite_contender(work),
            postgres_contender(schema_url),
        ]
        load_before = os.getloadavg()[0]
        print("measuring sync runs/s, interleaved ...", flush=True)
        runs_per_second = measure_runs(contenders, args.runs)
        results = [
            run_contender(contender, args, runs_per_second[contender.name])
            for contender in contenders
        ]
        machine = machine_summary(fast.url)
        machine.append(
            f"- 1-minute load average {load_before:.2f} at the start and "
            f"{os.getloadavg()[0]:.2f} at the end (other work shared the machine)"
        )
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()
        for server in (fast, durable, plain):
            server.stop()
            if server._process is not None and server._process.stderr is not None:
                server._process.stderr.close()

    report = render(results, machine, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
