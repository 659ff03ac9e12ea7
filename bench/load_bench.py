"""Load benchmark of the HTTP service: concurrent streamed conversations and approval throughput.

Starts its own Redis and ``warden serve`` on free 127.0.0.1 ports with a
scripted chat model, so it measures the service, the graph, the checkpoints
and SQLite, not a language model. Two runs:

1. ``--conversations`` threads each send one message at once and stream the
   answer; reports time to first token and to the ``done`` event.
2. ``--approvals`` threads pause on a cancellation; reports requests per second
   of listing, reading and deciding (rejecting) them.

Usage: ``python bench/load_bench.py --conversations 200 --workers 2``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from tools.retail import build_database  # noqa: E402
from warden.redis_server import RedisServer  # noqa: E402
from warden.settings import EXAMPLE_DOMAIN_DIR  # noqa: E402

CUSTOMER_KEY = "bench-customer-key-0001"
REVIEWER_KEY = "bench-reviewer-key-0001"
API_KEYS = {
    CUSTOMER_KEY: {"subject": "bench-chat", "role": "customer", "tenant": "bench"},
    REVIEWER_KEY: {"subject": "rita", "role": "supervisor", "tenant": "bench"},
}
ANSWER = " ".join(["Your order ships within two business days and tracking follows by email."] * 3)
ANSWER_SCRIPT = {
    "IntentOutput": [{"intent": "order_question", "entities": {}}],
    "PlanOutput": [{"steps": []}],
    "text": [ANSWER],
}
CANCEL_MESSAGE = "Hi, this is Emma Smith, zip code 10192. Please cancel my order #W2417020, I no longer need it."
CANCEL_SCRIPT = {
    "IntentOutput": [{"intent": "cancel_order", "entities": {"first_name": "Emma", "last_name": "Smith"}}],
    "PlanOutput": [{"steps": [
        {"tool": "find_user_id_by_name_zip",
         "arguments": {"first_name": "Emma", "last_name": "Smith", "zip": "10192"}, "why": "authenticate"},
        {"tool": "cancel_pending_order",
         "arguments": {"order_id": "#W2417020", "reason": "no longer needed"}, "why": "customer asked"},
    ]}],
    "text": ["The cancellation was not approved."],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


class Server:
    """``warden serve`` in its own process group, on a fresh database."""

    def __init__(self, work_dir: Path, redis_url: str, script: dict, *, workers: int, token_delay: float) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        db_path = work_dir / "retail.sqlite"
        build_database(EXAMPLE_DOMAIN_DIR / "db.json", db_path)
        script_path = work_dir / "script.json"
        script_path.write_text(json.dumps({**script, "token_delay_seconds": token_delay}))
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "WARDEN_DATA_DIR": str(work_dir),
            "WARDEN_DB_PATH": str(db_path),
            "WARDEN_CHAT_MODEL": f"scripted:{script_path}",
            "WARDEN_RETRIEVAL_K": "0",
            "WARDEN_TENANT": "bench",
            "WARDEN_APPROVAL_THRESHOLD": "5000",
            "WARDEN_API_KEYS": json.dumps(API_KEYS),
            "WARDEN_REVIEWERS": "rita:supervisor",
            "PYTHONPATH": str(PROJECT_ROOT),
        }
        self._log = (work_dir / "serve.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "warden.cli", "serve", "--port", str(self.port), "--workers", str(workers)],
            cwd=PROJECT_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._wait_ready(work_dir / "serve.log")

    def _wait_ready(self, log_path: Path, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"warden serve exited with {self.process.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with httpx.Client(trust_env=False, timeout=2) as client:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"warden serve did not respond to /healthz within {timeout:.0f} s")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()


@dataclass
class ConversationStats:
    first_token: list[float] = field(default_factory=list)
    completion: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def _conversation(client: httpx.AsyncClient, stats: ConversationStats) -> None:
    headers = {"Authorization": f"Bearer {CUSTOMER_KEY}"}
    try:
        created = await client.post("/v1/threads", json={}, headers=headers)
        created.raise_for_status()
        thread_id = created.json()["thread_id"]
        started = time.perf_counter()
        first = None
        text, event, answer = [], None, None
        async with client.stream(
            "POST", f"/v1/threads/{thread_id}/messages", json={"text": "Where is my order?"}, headers=headers
        ) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line.partition(":")[2].strip()
                elif line.startswith("data:"):
                    data = json.loads(line.partition(":")[2])
                    if event == "token":
                        first = first if first is not None else time.perf_counter() - started
                        text.append(data["text"])
                    elif event == "done":
                        answer = data["answer"]
                    elif event == "error":
                        raise RuntimeError(f"error event: {data}")
        if answer != ANSWER or "".join(text) != ANSWER:
            raise RuntimeError(f"thread {thread_id}: streamed text does not match the answer")
        stats.first_token.append(first if first is not None else float("nan"))
        stats.completion.append(time.perf_counter() - started)
    except (httpx.HTTPError, RuntimeError, KeyError, json.JSONDecodeError) as error:
        stats.errors.append(f"{type(error).__name__}: {error}")


async def run_conversations(url: str, count: int, timeout: float) -> tuple[ConversationStats, float]:
    stats = ConversationStats()
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits, trust_env=False) as client:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.gather(*(_conversation(client, stats) for _ in range(count))), timeout)
        except TimeoutError:
            stats.errors.append(f"run stopped at the {timeout:.0f} s bound")
        return stats, time.perf_counter() - started


async def _timed(client: httpx.AsyncClient, requests: list[tuple[str, str, dict | None]], concurrency: int) -> tuple[float, int]:
    """Send ``requests`` with at most ``concurrency`` in flight; return (seconds, errors)."""
    headers = {"Authorization": f"Bearer {REVIEWER_KEY}"}
    semaphore = asyncio.Semaphore(concurrency)
    errors = 0

    async def one(method: str, path: str, body: dict | None) -> None:
        nonlocal errors
        async with semaphore:
            try:
                response = await client.request(method, path, json=body, headers=headers)
                if response.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(*request) for request in requests))
    return time.perf_counter() - started, errors


async def run_approvals(url: str, count: int, concurrency: int, timeout: float) -> dict[str, tuple[int, float, int]]:
    customer = {"Authorization": f"Bearer {CUSTOMER_KEY}"}
    results: dict[str, tuple[int, float, int]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=timeout, trust_env=False) as client:
        threads = []
        for _ in range(count):
            thread_id = (await client.post("/v1/threads", json={}, headers=customer)).json()["thread_id"]
            async with client.stream(
                "POST", f"/v1/threads/{thread_id}/messages", json={"text": CANCEL_MESSAGE}, headers=customer
            ) as response:
                async for _line in response.aiter_lines():
                    pass
            threads.append(thread_id)
        listing = await client.get("/v1/approvals", headers={"Authorization": f"Bearer {REVIEWER_KEY}"})
        pending = {item["thread_id"]: item["actions"][0]["action_id"] for item in listing.json()}
        if len(pending) != count:
            raise RuntimeError(f"expected {count} pending approvals, the service lists {len(pending)}")

        list_requests = [("GET", "/v1/approvals", None)] * 50
        results["list (GET /v1/approvals)"] = (len(list_requests), *await _timed(client, list_requests, concurrency))
        detail_requests = [("GET", f"/v1/approvals/{thread}", None) for thread in threads]
        results["detail (GET /v1/approvals/{id})"] = (len(detail_requests), *await _timed(client, detail_requests, concurrency))
        decide_requests = [
            ("POST", f"/v1/approvals/{thread}/decisions",
             {"decisions": {pending[thread]: {"decision": "reject", "reason": "load bench"}}})
            for thread in threads
        ]
        results["decide (POST .../decisions, reject + resume)"] = (
            len(decide_requests), *await _timed(client, decide_requests, concurrency)
        )
    return results


def _machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {platform.platform()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=200, help="concurrent conversations (default: 200)")
    parser.add_argument("--approvals", type=int, default=50, help="paused threads to list and decide (default: 50)")
    parser.add_argument("--concurrency", type=int, default=20, help="approval requests in flight (default: 20)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (default: 2)")
    parser.add_argument("--token-delay", type=float, default=0.01, help="seconds between streamed tokens (default: 0.01)")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on each run, in seconds (default: 300)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    redis_server = RedisServer(work / "redis", appendonly=False).start()
    try:
        (work / "conversations").mkdir()
        server = Server(work / "conversations", redis_server.url, ANSWER_SCRIPT, workers=args.workers, token_delay=args.token_delay)
        try:
            stats, wall = asyncio.run(run_conversations(server.url, args.conversations, args.timeout))
        finally:
            server.stop()
        (work / "approvals").mkdir()
        server = Server(work / "approvals", redis_server.url, CANCEL_SCRIPT, workers=args.workers, token_delay=0.0)
        try:
            approvals = asyncio.run(run_approvals(server.url, args.approvals, args.concurrency, args.timeout))
        finally:
            server.stop()
    finally:
        redis_server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"machine: {_machine()}")
    print(f"command: python bench/load_bench.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"\n{args.conversations} concurrent conversations, {args.workers} workers, "
          f"{len(ANSWER.split())} tokens at {args.token_delay} s each; wall time {wall:.1f} s")
    print("| metric | p50 (s) | p95 (s) | max (s) |")
    print("| --- | --- | --- | --- |")
    for name, values in [("time to first token", stats.first_token), ("time to done", stats.completion)]:
        print(f"| {name} | {statistics.median(values) if values else float('nan'):.3f} | "
              f"{_percentile(values, 0.95):.3f} | {max(values, default=float('nan')):.3f} |")
    print(f"completed: {len(stats.completion)}, errors: {len(stats.errors)}")
    for error in sorted(set(stats.errors))[:5]:
        print(f"  {error}")
    print(f"\n{args.approvals} paused threads, {args.concurrency} requests in flight")
    print("| endpoint | requests | seconds | requests/s | errors |")
    print("| --- | --- | --- | --- | --- |")
    for name, (count, seconds, errors) in approvals.items():
        print(f"| {name} | {count} | {seconds:.2f} | {count / seconds:.1f} | {errors} |")
    return 1 if stats.errors else 0


if __name__ == "__main__":
    sys.exit(main())
