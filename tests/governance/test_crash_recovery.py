"""A process killed at each point of the effect journal is resumed elsewhere and acts once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.governance.conftest import EMMA_ORDER, refunds, script
from tools.retail import RetailStore
from warden.errors import ThreadStateError
from warden.models import ScriptedChatModel
from warden.runtime import Warden

ROOT = Path(__file__).resolve().parents[2]
LOCK_SECONDS = 2.0


def _run_until_killed(settings, thread_id: str, point: str, lock_seconds: float = LOCK_SECONDS) -> str:
    raw = json.dumps({
        "data_dir": str(settings.data_dir),
        "redis_url": settings.redis_url,
        "db_path": str(settings.db_path),
        "run_lock_seconds": lock_seconds,
    })
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("crash_process.py")), raw, thread_id, point],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert completed.returncode == -9, completed.stderr[-3000:]
    first_line = completed.stdout.strip().splitlines()[0]
    return json.loads(first_line)["action_id"]


@pytest.mark.parametrize(
    ("point", "state_after_crash"),
    [("intended", "intended"), ("running", "running"), ("returned", "running"), ("closed", "done")],
)
def test_killed_execution_resumes_once(settings, store, template_db, tmp_path, point, state_after_crash):
    reference = tmp_path / "reference.sqlite"
    shutil.copy(template_db, reference)
    RetailStore(reference).call("cancel_pending_order", {"order_id": EMMA_ORDER, "reason": "no longer needed"})
    thread_id = f"t-crash-{point}"

    action_id = _run_until_killed(settings, thread_id, point)

    overrides = {"reviewers": {"alice": "supervisor"}, "approval_threshold": 5000.0, "run_lock_seconds": LOCK_SECONDS}
    resumed_settings = settings.__class__(**{**settings.__dict__, **overrides})
    with Warden.open(resumed_settings, chat_model=ScriptedChatModel(script=script(answer="Cancelled.")), index=None) as warden:
        assert warden.journal.get(thread_id, action_id).state == state_after_crash
        assert warden.show_action(action_id).state == "approved"
        outcome = warden.resume(thread_id)
        assert outcome.status == "answered"
        entry = warden.journal.get(thread_id, action_id)
        assert entry.state == "done"
        assert entry.result["status"] == "cancelled"
        [result] = warden.graph.get_state(warden._config(thread_id)).values["results"]
        assert result.status == "done"

    assert len(refunds(store)) == 1
    assert store.effect_count(f"{thread_id}:{action_id}") == 1
    assert store.checksum() == RetailStore(reference).checksum()


def _cli(settings, script_file: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": settings.redis_url,
        "WARDEN_DATA_DIR": str(settings.data_dir),
        "WARDEN_DB_PATH": str(settings.db_path),
        "WARDEN_INDEX_DIR": str(settings.index_dir),
        "WARDEN_CHAT_MODEL": f"scripted:{script_file}",
        "WARDEN_REVIEWERS": "alice:supervisor",
        "WARDEN_APPROVAL_THRESHOLD": "5000",
        "WARDEN_RUN_LOCK_SECONDS": "600",
    }
    return subprocess.run(
        [sys.executable, "-m", "warden.cli", *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )


def test_cli_resume_finishes_killed_run(settings, store, tmp_path):
    thread_id = "t-crash-cli"
    # The dead process's lease would last 10 minutes; resume takes the lock over
    # because its holder no longer exists.
    action_id = _run_until_killed(settings, thread_id, "running", lock_seconds=600)
    script_file = tmp_path / "script.json"
    # The resumed run only generates the reply, so the script needs no plan.
    script_file.write_text(json.dumps({"text": ["Cancelled."]}))

    resumed = _cli(settings, script_file, "resume", thread_id)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "run lock taken over from dead process" in resumed.stderr
    assert "Cancelled." in resumed.stdout
    assert len(refunds(store)) == 1
    assert store.effect_count(f"{thread_id}:{action_id}") == 1

    again = _cli(settings, script_file, "resume", thread_id)

    assert again.returncode == 2
    assert f"thread {thread_id!r} has no unfinished run" in again.stderr
    assert len(refunds(store)) == 1


def test_new_message_waits_for_killed_run(settings, store):
    thread_id = "t-crash-new-message"
    _run_until_killed(settings, thread_id, "closed")
    overrides = {"reviewers": {"alice": "supervisor"}, "approval_threshold": 5000.0, "run_lock_seconds": LOCK_SECONDS}
    resumed_settings = settings.__class__(**{**settings.__dict__, **overrides})
    with Warden.open(resumed_settings, chat_model=ScriptedChatModel(script=script(answer="Cancelled.")), index=None) as warden:
        with pytest.raises(ThreadStateError, match=f"warden resume {thread_id}"):
            warden.send(thread_id, "Is my order cancelled?")
        messages_before = len(warden.messages(thread_id))

        outcome = warden.resume(thread_id)

        assert outcome.status == "answered"
        assert len(warden.messages(thread_id)) > messages_before
    assert len(refunds(store)) == 1
