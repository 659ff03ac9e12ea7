"""Pause a cancel, approve it and kill this process at one point of the effect journal.

Usage: python crash_process.py SETTINGS_JSON THREAD POINT
POINT is a journal point (intended, running, returned, closed). The process
sends SIGKILL to itself there, so nothing after that point runs or is flushed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from tests.governance.conftest import EMMA_ORDER, HELLO, plan, script, step
from warden.models import ScriptedChatModel
from warden.runtime import Warden
from warden.settings import Settings


def main() -> None:
    settings_json, thread_id, point = sys.argv[1:4]
    raw = json.loads(settings_json)
    settings = Settings.from_env(
        data_dir=Path(raw["data_dir"]),
        redis_url=raw["redis_url"],
        db_path=Path(raw["db_path"]),
        approval_threshold=5000.0,
        chat_model="scripted",
        reviewers={"alice": "supervisor"},
        run_lock_seconds=float(raw["run_lock_seconds"]),
    )
    model = ScriptedChatModel(
        script=script(plan(step("cancel_pending_order", order_id=EMMA_ORDER, reason="no longer needed")))
    )
    with Warden.open(settings, chat_model=model, index=None) as warden:
        [action] = warden.send(thread_id, f"{HELLO} Cancel {EMMA_ORDER}.").pending
        print(json.dumps({"action_id": action.action_id}), flush=True)

        def kill_at(reached: str, entry) -> None:
            if reached == point:
                os.kill(os.getpid(), signal.SIGKILL)

        warden.journal.hook = kill_at
        warden.decide(thread_id, {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    print(json.dumps({"finished": True}), flush=True)


if __name__ == "__main__":
    main()
