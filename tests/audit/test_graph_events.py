"""Events the support graph appends: one per step, stamped with checkpoints, never duplicated by re-runs."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema

from tests.graph.conftest import CANCEL_MESSAGE, cancel_script

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "audit.schema.json").read_text())


def _cancelled(open_warden, thread_id: str = "t-audit"):
    warden = open_warden(cancel_script())
    [action] = warden.send(thread_id, CANCEL_MESSAGE).pending
    warden.decide(thread_id, {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    warden.decide(thread_id, {action.action_id: {"decision": "approve", "reviewer": "bob"}})
    return warden, action


def test_cancel_flow_records_every_step(open_warden):
    warden, action = _cancelled(open_warden)
    items = warden.audit.read("t-audit")
    kinds = [item.entry["kind"] for item in items]
    assert kinds == [
        "message_received", "intent", "retrieved", "plan",
        "policy_verdict", "tool_result", "policy_verdict", "tool_result",
        "policy_verdict", "approval_requested", "decision_approve", "decision_approve",
        "execution_started", "execution_finished", "action_done", "answer_sent",
    ]
    assert warden.verify_audit("t-audit")[0].ok


def test_events_carry_existing_checkpoints(open_warden):
    warden, _action = _cancelled(open_warden)
    checkpoints = {row["checkpoint_id"]: row for row in warden.history("t-audit")}
    for item in warden.audit.read("t-audit"):
        checkpoint_id = item.entry["checkpoint_id"]
        assert checkpoint_id in checkpoints, item.entry["event_id"]
        if item.entry["node"] != "request_approval":
            assert item.entry["node"] in checkpoints[checkpoint_id]["next"], item.entry["event_id"]


def test_decision_records_reviewer_and_policy_rule(open_warden):
    warden, action = _cancelled(open_warden)
    items = {item.entry["event_id"]: item for item in warden.audit.read("t-audit")}
    verdict = items["t1/check_policy/policy_verdict/r0/2"].data
    assert verdict["rule"] == "approval.two_person"
    assert verdict["action_id"] == action.action_id
    assert any(read["tool"] == "get_order_details" for read in verdict["policy_reads"])
    second = items[f"ledger/{action.action_id}/decision/2"].data
    assert second["reviewer"] == "bob"
    assert second["role"] == "supervisor"
    assert second["state"] == "approved"
    assert second["reviewers"] == ["alice", "bob"]
    finished = items["t1/execute_actions/execution_finished/r1/2"].data
    assert finished["status"] == "done"
    assert finished["idempotency_key"] == f"t-audit:{action.action_id}"


def test_resumes_append_no_duplicates(open_warden):
    warden, _action = _cancelled(open_warden)
    items = warden.audit.read("t-audit")
    event_ids = Counter(item.entry["event_id"] for item in items)
    assert max(event_ids.values()) == 1
    assert sum(1 for item in items if item.entry["kind"] == "message_received") == 1


def test_edit_decision_records_argument_diff(open_warden):
    warden = open_warden(cancel_script())
    [action] = warden.send("t-edit", CANCEL_MESSAGE).pending
    edited = {"order_id": action.arguments["order_id"], "reason": "ordered by mistake"}
    warden.decide("t-edit", {action.action_id: {"decision": "edit", "arguments": edited, "reviewer": "alice"}})
    [edit] = [item.data for item in warden.audit.read("t-edit") if item.entry["kind"] == "decision_edit"]
    assert edit["arguments_diff"] == {"reason": {"from": "no longer needed", "to": "ordered by mistake"}}


def test_ledger_events_read_from_audit_log(open_warden):
    warden, action = _cancelled(open_warden)
    events = warden.ledger.events("t-audit")
    assert [event["event"] for event in events] == [
        "approval_requested", "decision_approve", "decision_approve", "action_done",
    ]
    assert events[0]["action_id"] == action.action_id
    assert events[0]["round"] == 1


def test_export_lines_match_schema(open_warden):
    warden, _action = _cancelled(open_warden)
    lines = list(warden.audit.export(thread_id="t-audit"))
    assert len(lines) == 16
    for line in lines:
        jsonschema.validate(json.loads(json.dumps(line)), SCHEMA)
    warden.audit.forget_thread("t-audit")
    for line in warden.audit.export(thread_id="t-audit"):
        jsonschema.validate(json.loads(json.dumps(line)), SCHEMA)


def test_export_filters_time_and_tenant(open_warden):
    warden, _action = _cancelled(open_warden, "t-one")
    warden.send("t-two", "Hello, what is your return policy?")
    everything = list(warden.audit.export())
    assert {line["thread_id"] for line in everything} == {"t-one", "t-two"}
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert list(warden.audit.export(since=future)) == []
    assert len(list(warden.audit.export(until=future))) == len(everything)
    heads = {head["thread_id"]: head for head in warden.audit.export_heads()}
    assert heads["t-one"]["count"] == 16
    assert warden.audit.verify("t-one", anchor=heads["t-one"]).ok
