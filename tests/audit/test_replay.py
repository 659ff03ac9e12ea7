"""Replay: timelines, dry runs that touch nothing, and forks that diverge under another policy."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.graph.conftest import CANCEL_MESSAGE, REVIEWERS, cancel_script
from warden.errors import ReplayError
from warden.policy import DEFAULT_SCOPES, PolicyConfig
from warden.replay import RecordedStore, UnrecordedCallError, dry_run, render_timeline, timeline

ROOT = Path(__file__).resolve().parents[2]


def _cancelled(open_warden, thread_id: str = "t-replay"):
    warden = open_warden(cancel_script())
    [action] = warden.send(thread_id, CANCEL_MESSAGE).pending
    warden.decide(thread_id, {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    warden.decide(thread_id, {action.action_id: {"decision": "approve", "reviewer": "bob"}})
    return warden


def _fork_point(warden, thread_id: str, node: str) -> str:
    return next(row["checkpoint_id"] for row in warden.history(thread_id) if row["next"] == [node])


def _redis_snapshot(redis_client) -> dict[bytes, object]:
    """Return every key's logical content; DUMP bytes may differ for equal hashes."""
    readers = {
        b"string": redis_client.get,
        b"hash": redis_client.hgetall,
        b"set": redis_client.smembers,
        b"zset": lambda key: redis_client.zrange(key, 0, -1, withscores=True),
        b"list": lambda key: redis_client.lrange(key, 0, -1),
        b"stream": redis_client.xrange,
    }
    return {key: readers[redis_client.type(key)](key) for key in redis_client.scan_iter()}


def test_timeline_lists_steps_with_events(open_warden):
    warden = _cancelled(open_warden)
    rows = timeline(warden, "t-replay")
    assert rows[0]["source"] == "input"
    assert all(row["checkpoint_id"] for row in rows)
    events = [event["kind"] for row in rows for event in row["events"]]
    assert events[0] == "message_received"
    assert events[-1] == "answer_sent"
    text = render_timeline(rows)
    assert "check_policy policy_verdict: step 2 cancel_pending_order -> needs_approval (approval.two_person)" in text


def test_timeline_is_deterministic(open_warden):
    warden = _cancelled(open_warden)
    first = json.dumps(timeline(warden, "t-replay"), default=str)
    second = json.dumps(timeline(warden, "t-replay"), default=str)
    assert first == second


def test_dry_run_reproduces_recorded_run(open_warden):
    warden = _cancelled(open_warden)
    report = dry_run(warden, "t-replay")
    assert report.stopped is None
    assert report.divergences == []
    assert report.unrecorded_calls == []
    assert report.answer == "Your order #W2417020 has been cancelled."


def test_dry_runs_are_identical(open_warden):
    warden = _cancelled(open_warden)
    first = dry_run(warden, "t-replay").as_dict()
    second = dry_run(warden, "t-replay").as_dict()
    assert first == second
    # Ledger events (request, decisions, outcome) are not replayed: 16 recorded minus 4.
    assert len(first["events"]) == 12


def test_dry_run_writes_nothing(open_warden, settings, store, redis_client):
    warden = _cancelled(open_warden)
    checksum = store.checksum()
    stat = os.stat(settings.db_path)
    before = _redis_snapshot(redis_client)
    dry_run(warden, "t-replay")
    dry_run(warden, "t-replay", fork_checkpoint_id=_fork_point(warden, "t-replay", "check_policy"))
    assert store.checksum() == checksum
    after = os.stat(settings.db_path)
    assert after.st_mtime_ns == stat.st_mtime_ns
    assert after.st_size == stat.st_size
    assert _redis_snapshot(redis_client) == before


def test_fork_diverges_when_scope_withdrawn(open_warden):
    warden = _cancelled(open_warden)
    config = dataclasses.replace(
        warden.context.policy.config, granted_scopes=DEFAULT_SCOPES - {"orders:cancel"}, version="retail-2"
    )
    report = dry_run(
        warden, "t-replay", policy_config=config, fork_checkpoint_id=_fork_point(warden, "t-replay", "check_policy")
    )
    [policy] = [d for d in report.divergences if d.kind == "policy_verdict"]
    assert policy.message.startswith("policy retail-2 would now deny step 3 (cancel_pending_order)")
    assert policy.replayed["rule"] == "scope.not_granted"
    assert policy.recorded["rule"] == "approval.two_person"
    executed = [d for d in report.divergences if d.event_id.startswith("t1/execute_actions/")]
    assert len(executed) == 2


def test_dry_run_diverges_with_higher_threshold(open_warden):
    warden = _cancelled(open_warden)
    config = PolicyConfig(approval_threshold=10_000.0, version="retail-3")
    report = dry_run(warden, "t-replay", policy_config=config)
    [policy] = [d for d in report.divergences if d.kind == "policy_verdict"]
    assert "step 3 (cancel_pending_order)" in policy.message
    assert policy.replayed["rule"] == "approval.write"
    assert policy.replayed["approvals_required"] == 1


def test_recorded_store_refuses_unrecorded_call(open_warden):
    warden = _cancelled(open_warden)
    recorded = RecordedStore(warden.audit.read("t-replay"))
    order = recorded.call("get_order_details", {"order_id": "#W2417020"})
    assert order["status"] == "pending"
    with pytest.raises(UnrecordedCallError, match="never calls the store"):
        recorded.call("cancel_pending_order", {"order_id": "#W2417020", "reason": "ordered by mistake"})
    assert recorded.calls[-1] == {
        "tool": "cancel_pending_order",
        "arguments": {"order_id": "#W2417020", "reason": "ordered by mistake"},
        "recorded": False,
    }


def test_dry_run_of_unknown_thread_refused(open_warden):
    warden = open_warden(cancel_script())
    with pytest.raises(ReplayError, match="no audit log"):
        dry_run(warden, "t-unknown")


def test_dry_run_of_erased_thread_refused(open_warden):
    warden = _cancelled(open_warden)
    warden.audit.forget_thread("t-replay")
    with pytest.raises(ReplayError, match="erased"):
        dry_run(warden, "t-replay")


def test_replay_in_new_process(open_warden, settings, store):
    warden = _cancelled(open_warden)
    checksum = store.checksum()
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "WARDEN_DATA_DIR": str(settings.data_dir),
        "WARDEN_DB_PATH": str(settings.db_path),
        "WARDEN_INDEX_DIR": str(settings.index_dir),
        "WARDEN_CHAT_MODEL": "scripted",
        "WARDEN_REVIEWERS": ",".join(f"{name}:{role}" for name, role in REVIEWERS.items()),
    }

    fork = _fork_point(warden, "t-replay", "check_policy")
    command = [
        sys.executable, "-m", "warden.cli", "replay", "t-replay", "--json", "--dry-run",
        "--fork", fork, "--policy-version", "retail-2", "--withdraw-scope", "orders:cancel",
    ]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["policy_version"] == "retail-2"
    assert any("would now deny step 3" in d["message"] for d in report["divergences"])

    timeline_run = subprocess.run(
        [sys.executable, "-m", "warden.cli", "replay", "t-replay"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert timeline_run.returncode == 0, timeline_run.stderr
    assert "answer_sent" in timeline_run.stdout

    verify = subprocess.run(
        [sys.executable, "-m", "warden.cli", "audit", "verify", "--all"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "verified 1 thread(s), 0 broken" in verify.stdout
    assert store.checksum() == checksum


def test_dry_run_replays_classifier_intents(settings):
    from ingestion import load_default_embedder  # noqa: PLC0415 - loads torch
    from warden.intent import IntentClassifier, read_examples  # noqa: PLC0415
    from warden.models import ScriptedChatModel  # noqa: PLC0415
    from warden.runtime import Warden  # noqa: PLC0415
    from warden.settings import EXAMPLE_DOMAIN_DIR  # noqa: PLC0415

    classifier = IntentClassifier.train(*read_examples(EXAMPLE_DOMAIN_DIR / "intents.jsonl"), load_default_embedder())
    # The classifier decides the intent, so the script has no intent output.
    script = {key: value for key, value in cancel_script().items() if key != "IntentOutput"}
    with Warden.open(settings, chat_model=ScriptedChatModel(script=script), index=None, intent_classifier=classifier) as warden:
        [action] = warden.send("t-classified", CANCEL_MESSAGE).pending
        for reviewer in ("alice", "bob"):
            warden.decide("t-classified", {action.action_id: {"decision": "approve", "reviewer": reviewer}})
        [intent] = [item.data for item in warden.audit.read("t-classified") if item.entry["kind"] == "intent"]
        assert intent["path"] == "classifier"
        assert intent["label"] == "cancel_order"

        report = dry_run(warden, "t-classified")

    assert report.divergences == []
    assert report.stopped is None
    assert report.answer == "Your order #W2417020 has been cancelled."
