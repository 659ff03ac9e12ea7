"""``langgraph dev`` serves the support graph offline with the project's Redis saver.

Starts the dev server from ``langgraph.json`` on a free 127.0.0.1 port with a
scripted model, runs a cancellation to the approval interrupt over its HTTP
API, resumes it with a ``Command`` and checks the database and the checkpoints
in Redis.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from tools.retail import RetailStore, build_database
from warden.settings import EXAMPLE_DOMAIN_DIR

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LANGGRAPH = Path(sys.executable).parent / "langgraph"
EMMA_ORDER = "#W2417020"
CANCEL_MESSAGE = (
    "Hi, this is Emma Smith, zip code 10192. I found a better deal on the laptop, "
    "so please cancel my order #W2417020, I no longer need it."
)
SCRIPT = {
    "IntentOutput": [{"intent": "cancel_order", "entities": {"first_name": "Emma", "last_name": "Smith"}}],
    "PlanOutput": [{"steps": [
        {"tool": "find_user_id_by_name_zip",
         "arguments": {"first_name": "Emma", "last_name": "Smith", "zip": "10192"}, "why": "authenticate"},
        {"tool": "cancel_pending_order",
         "arguments": {"order_id": EMMA_ORDER, "reason": "no longer needed"}, "why": "the customer asked"},
    ]}],
    "text": ["Your order #W2417020 is cancelled."],
}
# Off switches for tracing, analytics and update checks of the LangChain tools.
OFFLINE_ENV = {
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_API_KEY": "",
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dev_server(tmp_path: Path, redis_url: str):
    """Yield the base URL of a ``langgraph dev`` process; stop its process group afterwards."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    build_database(EXAMPLE_DOMAIN_DIR / "db.json", data_dir / "retail.sqlite")
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    port = _free_port()

    env = {
        **os.environ,
        **OFFLINE_ENV,
        "REDIS_URL": redis_url,
        "WARDEN_DATA_DIR": str(data_dir),
        "WARDEN_CHAT_MODEL": f"scripted:{script}",
        "WARDEN_APPROVAL_THRESHOLD": "5000",
        "WARDEN_REVIEWERS": "alice:supervisor",
        "PYTHONPATH": str(PROJECT_ROOT),
    }

    log = (tmp_path / "dev.log").open("w")
    process = subprocess.Popen(
        [str(LANGGRAPH), "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload",
         "--config", str(PROJECT_ROOT / "langgraph.json")],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    try:
        deadline = time.monotonic() + 90
        with httpx.Client(trust_env=False, timeout=2) as client:
            while True:
                if process.poll() is not None:
                    pytest.fail(f"langgraph dev exited with {process.returncode}:\n{(tmp_path / 'dev.log').read_text()[-3000:]}")
                try:
                    if client.get(f"{url}/ok").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("langgraph dev did not respond to /ok within 90 s")
                time.sleep(0.5)
        yield url, data_dir
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def test_dev_server_runs_to_interrupt_and_resumes(dev_server, redis_url):
    url, data_dir = dev_server
    with httpx.Client(base_url=url, timeout=120, trust_env=False) as client:
        _run_cancellation(client, data_dir, redis_url)


def _run_cancellation(client: httpx.Client, data_dir: Path, redis_url: str) -> None:
    [assistant] = client.post("/assistants/search", json={"graph_id": "support"}).json()
    graph = client.get(f"/assistants/{assistant['assistant_id']}/graph").json()
    nodes = {node["id"] for node in graph["nodes"]}
    assert {"capture_intent", "request_approval", "execute_actions", "respond"} <= nodes

    thread_id = client.post("/threads", json={}).json()["thread_id"]
    run = client.post(f"/threads/{thread_id}/runs/wait", json={
        "assistant_id": "support",
        "input": {"messages": [{"role": "user", "content": CANCEL_MESSAGE}]},
    })
    assert run.status_code == 200, run.text
    assert "__error__" not in run.json(), f"the run failed in langgraph dev: {run.json()['__error__']}"
    state = client.get(f"/threads/{thread_id}/state").json()
    assert state["next"] == ["request_approval"]
    [interrupt] = state["interrupts"]
    payload = interrupt["value"]
    assert payload["type"] == "warden.approval"
    [action] = payload["actions"]
    assert action["tool"] == "cancel_pending_order"
    store = RetailStore(data_dir / "retail.sqlite")
    assert store.call("get_order_details", {"order_id": EMMA_ORDER})["status"] == "pending"

    resumed = client.post(f"/threads/{thread_id}/runs/wait", json={
        "assistant_id": "support",
        "command": {"resume": {action["action_id"]: {"decision": "approve", "reviewer": "alice"}}},
    })
    assert resumed.status_code == 200, resumed.text
    state = client.get(f"/threads/{thread_id}/state").json()
    assert not [i["value"].get("error") for i in state["interrupts"]]
    assert state["next"] == []
    assert state["values"]["answer"] == "Your order #W2417020 is cancelled."
    [result] = state["values"]["results"]
    assert result["status"] == "done"
    assert result["reviewer"] == "alice"
    assert store.call("get_order_details", {"order_id": EMMA_ORDER})["status"] == "cancelled"

    # The checkpoints live in the project's Redis, not in the dev server's memory.
    client_redis = redis.Redis.from_url(redis_url)
    assert client_redis.keys(f"*{thread_id}*")
    client_redis.close()
