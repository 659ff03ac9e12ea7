"""A thread paused in one process is resumed in another and acts exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from langgraph.types import Command

from tests.graph.conftest import EMMA_ORDER
from warden.models import ScriptedChatModel
from warden.runtime import Warden

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> dict:
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("agent_process.py")), *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_pause_in_one_process_resume_in_another(settings, store):
    raw = json.dumps({
        "data_dir": str(settings.data_dir),
        "redis_url": settings.redis_url,
        "db_path": str(settings.db_path),
        "approval_threshold": 5000.0,
    })
    paused = _run("send", raw, "t-two-proc")
    assert paused["status"] == "awaiting_approval"
    [action] = paused["pending"]
    assert store.call("get_order_details", {"order_id": EMMA_ORDER})["status"] == "pending"

    decision = json.dumps({action["action_id"]: {"decision": "approve", "reviewer": "alice"}})
    resumed = _run("decide", raw, "t-two-proc", decision)
    assert resumed["status"] == "answered"
    assert resumed["answer"]

    order = store.call("get_order_details", {"order_id": EMMA_ORDER})
    assert order["status"] == "cancelled"
    refunds = [p for p in order["payment_history"] if p["transaction_type"] == "refund"]
    assert len(refunds) == 1
    gift_card = store.call("get_user_details", {"user_id": "emma_smith_8564"})["payment_methods"]["gift_card_8541487"]
    balance_after = gift_card["balance"]

    # The history in Redis shows every node of the turn, read by this third process.
    with Warden.open(settings, chat_model=ScriptedChatModel(script={"text": ["Done again."]}), index=None) as warden:
        history = warden.history("t-two-proc")
        steps = [row["step"] for row in history]
        assert steps == sorted(steps)
        assert any(row["interrupts"] for row in history)
        nodes = [
            task.name
            for snapshot in warden.graph.get_state_history(warden._config("t-two-proc"))
            for task in snapshot.tasks
        ]
        for node in ("capture_intent", "retrieve_context", "plan_actions", "run_lookups",
                     "check_policy", "request_approval", "execute_actions", "respond"):
            assert node in nodes
        # Re-running the execution step from its checkpoint returns the recorded effect.
        before_execute = next(
            s for s in warden.graph.get_state_history(warden._config("t-two-proc"))
            if s.next == ("execute_actions",)
        )
        warden.graph.invoke(None, before_execute.config, context=warden.context)
    order = store.call("get_order_details", {"order_id": EMMA_ORDER})
    assert len([p for p in order["payment_history"] if p["transaction_type"] == "refund"]) == 1
    user = store.call("get_user_details", {"user_id": "emma_smith_8564"})
    assert user["payment_methods"]["gift_card_8541487"]["balance"] == balance_after
