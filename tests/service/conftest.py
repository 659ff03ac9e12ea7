"""Fixtures for the HTTP service: a real uvicorn server on 127.0.0.1, real Redis and SQLite.

Only the chat model is scripted. Each test gets its own database copy and a
flushed Redis; ``start_service(script)`` runs the app in a background thread.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tools.retail import RetailStore, build_database
from warden.runtime import Warden
from warden.service.app import create_app
from warden.service.chat import PacedScriptedChatModel
from warden.settings import EXAMPLE_DOMAIN_DIR, Settings

TOKEN_SECRET = "test-secret-" + "s" * 40
CUSTOMER_KEY = "customer-key-acme-0001"
ALICE_KEY = "reviewer-key-alice-0001"
BOB_KEY = "reviewer-key-bob-000001"
CAROL_KEY = "reviewer-key-carol-0001"
ADMIN_KEY = "admin-key-acme-00000001"
GLOBEX_CUSTOMER_KEY = "customer-key-globex-01"
GLOBEX_REVIEWER_KEY = "reviewer-key-globex-01"
API_KEYS = {
    CUSTOMER_KEY: {"subject": "web-chat", "role": "customer", "tenant": "acme"},
    ALICE_KEY: {"subject": "alice", "role": "supervisor", "tenant": "acme"},
    BOB_KEY: {"subject": "bob", "role": "supervisor", "tenant": "acme"},
    CAROL_KEY: {"subject": "carol", "role": "agent", "tenant": "acme"},
    ADMIN_KEY: {"subject": "root", "role": "admin", "tenant": "acme"},
    GLOBEX_CUSTOMER_KEY: {"subject": "web-chat", "role": "customer", "tenant": "globex"},
    GLOBEX_REVIEWER_KEY: {"subject": "dana", "role": "supervisor", "tenant": "globex"},
}
REVIEWERS = {"alice": "supervisor", "bob": "supervisor", "carol": "agent", "dana": "supervisor", "root": "supervisor"}


def answer_script(answer: str) -> dict:
    """Script a model that plans nothing and streams ``answer``."""
    return {
        "IntentOutput": [{"intent": "order_question", "entities": {}}],
        "PlanOutput": [{"steps": []}],
        "text": [answer],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_events(response: httpx.Response, limit: int | None = None) -> list[tuple[str, Any]]:
    """Parse Server-Sent Events from a streaming response; stop after ``limit`` events."""
    events: list[tuple[str, Any]] = []
    name, data = "message", []
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if line.startswith("event:"):
            name = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data.append(line.partition(":")[2].removeprefix(" "))
        elif line == "" and data:
            events.append((name, json.loads("\n".join(data))))
            name, data = "message", []
            if limit is not None and len(events) >= limit:
                break
    return events


@dataclass
class Service:
    """A running service and what it runs on."""

    url: str
    warden: Warden
    settings: Settings
    store: RetailStore
    model: PacedScriptedChatModel
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        # trust_env=False: no proxy variable may route a test request off loopback.
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30, trust_env=False)
        self.clients.append(client)
        return client

    def new_thread(self, key: str = CUSTOMER_KEY, thread_id: str | None = None) -> str:
        body = {"thread_id": thread_id} if thread_id else {}
        response = self.client(key).post("/v1/threads", json=body)
        assert response.status_code == 201, response.text
        return response.json()["thread_id"]

    def send(self, thread_id: str, text: str, key: str = CUSTOMER_KEY) -> list[tuple[str, Any]]:
        with self.client(key).stream("POST", f"/v1/threads/{thread_id}/messages", json={"text": text}) as response:
            assert response.status_code == 200, response.read()
            return read_events(response)

    def decide(self, thread_id: str, decisions: dict, key: str) -> httpx.Response:
        return self.client(key).post(f"/v1/approvals/{thread_id}/decisions", json={"decisions": decisions})

    def decide_stream(self, thread_id: str, decisions: dict, key: str):
        """Open a decision request whose response is Server-Sent Events, for use in a with statement."""
        return self.client(key).stream(
            "POST", f"/v1/approvals/{thread_id}/decisions",
            json={"decisions": decisions},
            headers={"Accept": "text/event-stream"},
        )


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "retail.sqlite"
    build_database(EXAMPLE_DOMAIN_DIR / "db.json", path)
    return path


@pytest.fixture
def service_settings(tmp_path: Path, redis_url: str, template_db: Path) -> Settings:
    db_path = tmp_path / "retail.sqlite"
    shutil.copy(template_db, db_path)
    return Settings.from_env(
        data_dir=tmp_path,
        redis_url=redis_url,
        db_path=db_path,
        index_dir=tmp_path / "index",
        chat_model="scripted",
        tenant="acme",
        api_keys=API_KEYS,
        token_secret=TOKEN_SECRET,
        reviewers=REVIEWERS,
        approval_threshold=5000.0,
    )


def run_server(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    """Serve ``app`` on a free 127.0.0.1 port in a thread; return once it accepts requests."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test service did not start within 30 s")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def start_service(service_settings: Settings) -> Iterator[Any]:
    """Return ``start(script, *, token_delay_seconds=0, index=None, **overrides) -> Service``."""
    running: list[tuple[uvicorn.Server, threading.Thread, Any, Service]] = []

    def start(script: dict, *, token_delay_seconds: float = 0.0, index: Any = None, **overrides: Any) -> Service:
        settings = Settings.from_env(**{**service_settings.__dict__, **overrides})
        model = PacedScriptedChatModel(script=script, token_delay_seconds=token_delay_seconds)
        manager = Warden.open(settings, chat_model=model, index=index)
        warden = manager.__enter__()
        server, thread, url = run_server(create_app(settings, warden=warden))
        service = Service(url=url, warden=warden, settings=settings, store=RetailStore(settings.db_path), model=model)
        running.append((server, thread, manager, service))
        return service

    yield start
    for server, thread, manager, service in running:
        for client in service.clients:
            client.close()
        server.should_exit = True
        thread.join(timeout=15)
        manager.__exit__(None, None, None)
