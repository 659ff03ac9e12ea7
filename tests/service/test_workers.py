"""``warden serve --workers 2``: a thread paused by one worker process is resumed by the other."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.graph.conftest import CANCEL_MESSAGE, EMMA_ORDER, cancel_script
from tests.service.conftest import ALICE_KEY, API_KEYS, CUSTOMER_KEY, REVIEWERS, free_port, read_events
from tools.retail import RetailStore
from warden.service.app import WORKER_PID_HEADER

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MAX_CONNECTION_TRIES = 200


@pytest.fixture
def served(tmp_path: Path, redis_url: str, template_db: Path):
    """Start ``warden serve --workers 2`` on a free port; yield its URL and database path."""
    db_path = tmp_path / "retail.sqlite"
    shutil.copy(template_db, db_path)
    script = tmp_path / "script.json"
    script.write_text(json.dumps(cancel_script("Your order #W2417020 is cancelled.")))
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "WARDEN_DATA_DIR": str(tmp_path),
        "WARDEN_DB_PATH": str(db_path),
        "WARDEN_CHAT_MODEL": f"scripted:{script}",
        "WARDEN_RETRIEVAL_K": "0",
        "WARDEN_TENANT": "acme",
        "WARDEN_APPROVAL_THRESHOLD": "5000",
        "WARDEN_API_KEYS": json.dumps(API_KEYS),
        "WARDEN_REVIEWERS": ",".join(f"{name}:{role}" for name, role in REVIEWERS.items()),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "warden.cli", "serve", "--port", str(port), "--workers", "2"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"warden serve exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with httpx.Client(trust_env=False, timeout=2) as client:
                    if client.get(f"{url}/healthz").status_code == 200:
                        break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("warden serve did not respond to /healthz within 90 s")
            time.sleep(0.3)
        yield url, db_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30, trust_env=False)


def test_thread_resumes_on_other_worker(served):
    url, db_path = served
    with _client(url, CUSTOMER_KEY) as customer:
        thread_id = customer.post("/v1/threads", json={}).json()["thread_id"]
        with customer.stream("POST", f"/v1/threads/{thread_id}/messages", json={"text": CANCEL_MESSAGE}) as response:
            paused_by = response.headers[WORKER_PID_HEADER]
            events = read_events(response)
    assert [name for name, _ in events] == ["approval_pending", "done"]
    [action] = events[0][1]["actions"]

    # Each fresh connection is accepted by whichever worker takes it first.
    seen = {paused_by}
    for _ in range(MAX_CONNECTION_TRIES):
        reviewer = _client(url, ALICE_KEY)
        probe = reviewer.get(f"/v1/approvals/{thread_id}")
        worker = probe.headers[WORKER_PID_HEADER]
        seen.add(worker)
        if worker != paused_by:
            break
        reviewer.close()
    else:
        pytest.fail(f"every one of {MAX_CONNECTION_TRIES} connections reached worker {paused_by}")
    try:
        assert probe.status_code == 200
        assert probe.json()["actions"][0]["action_id"] == action["action_id"]
        # The same keep-alive connection reaches the same worker again.
        decided = reviewer.post(
            f"/v1/approvals/{thread_id}/decisions", json={"decisions": {action["action_id"]: {"decision": "approve"}}}
        )
    finally:
        reviewer.close()
    assert decided.headers[WORKER_PID_HEADER] != paused_by
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "answered"
    assert decided.json()["results"][0]["reviewer"] == "alice"
    assert len(seen) == 2
    order = RetailStore(db_path).call("get_order_details", {"order_id": EMMA_ORDER})
    assert order["status"] == "cancelled"
