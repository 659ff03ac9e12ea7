"""Approval ledger rules: concurrency, separation of duties, two-person rule, expiry, queries."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from tests.governance.conftest import (
    EMMA_ID,
    EMMA_ORDER,
    EMMA_SECOND_PENDING,
    HELLO,
    NEW_ADDRESS,
    plan,
    refunds,
    script,
    step,
    tool_bodies,
)
from warden.actions import Decision
from warden.errors import (
    ApprovalConflictError,
    ApprovalExpiredError,
    ResumeError,
    ReviewerNotAllowedError,
)

CANCEL = plan(step("cancel_pending_order", order_id=EMMA_ORDER, reason="no longer needed"))
MOVE_ACCOUNT = plan(step("modify_user_address", user_id=EMMA_ID, **NEW_ADDRESS))
CROWD = {f"reviewer{i:02d}": "supervisor" for i in range(20)}
DIRECTORY = {"alice": "supervisor", "bob": "supervisor", "ann": "agent", **CROWD}


def _outcome(fn, results, index):
    try:
        fn()
        results[index] = "ok"
    except ApprovalConflictError as error:
        results[index] = error


def test_twenty_concurrent_approvals_execute_once(open_warden, store):
    warden = open_warden(script(CANCEL), approval_threshold=5000.0, reviewers=DIRECTORY)
    [action] = warden.send("t-race", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    barrier = threading.Barrier(20)
    results: list = [None] * 20

    def approve(name):
        barrier.wait()
        warden.decide("t-race", {action.action_id: {"decision": "approve", "reviewer": name}})

    threads = [
        threading.Thread(target=_outcome, args=(lambda n=name: approve(n), results, i))
        for i, name in enumerate(CROWD)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert results.count("ok") == 1
    errors = [r for r in results if isinstance(r, ApprovalConflictError)]
    assert len(errors) == 19
    winner = warden.show_action(action.action_id).reviewers
    assert len(winner) == 1
    for error in errors:
        assert f"already decided (approved) by {winner[0]}" in str(error)
    assert len(refunds(store)) == 1
    assert store.effect_count(f"t-race:{action.action_id}") == 1


def test_ledger_compare_and_set_has_one_winner(open_warden):
    warden = open_warden(script(CANCEL), approval_threshold=5000.0, reviewers=DIRECTORY)
    [action] = warden.send("t-cas", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    barrier = threading.Barrier(20)
    results: list = [None] * 20

    def approve(name):
        barrier.wait()
        warden.ledger.decide({action.action_id: Decision(decision="approve", reviewer=name)})

    threads = [
        threading.Thread(target=_outcome, args=(lambda n=name: approve(n), results, i))
        for i, name in enumerate(CROWD)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results.count("ok") == 1
    assert sum(isinstance(r, ApprovalConflictError) for r in results) == 19
    record = warden.show_action(action.action_id)
    assert record.state == "approved"
    assert len(record.decisions) == 1


def test_agent_role_cannot_approve_high_risk(open_warden, store):
    warden = open_warden(script(CANCEL), approval_threshold=5000.0, reviewers=DIRECTORY)
    [action] = warden.send("t-role", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    assert action.risk == "high"
    with pytest.raises(ReviewerNotAllowedError, match="needs one of \\['supervisor'\\]"):
        warden.decide("t-role", {action.action_id: {"decision": "approve", "reviewer": "ann"}})
    with pytest.raises(ReviewerNotAllowedError, match="not in the reviewer directory"):
        warden.decide("t-role", {action.action_id: {"decision": "approve", "reviewer": "stranger"}})
    with pytest.raises(ReviewerNotAllowedError, match="claims role"):
        warden.decide("t-role", {action.action_id: {"decision": "approve", "reviewer": "ann", "role": "supervisor"}})
    assert warden.show_action(action.action_id).state == "pending"
    assert store.call("get_order_details", {"order_id": EMMA_ORDER})["status"] == "pending"
    warden.decide("t-role", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    assert warden.show_action(action.action_id).decisions[0].role == "supervisor"


def test_agent_role_may_approve_medium_risk(open_warden, store):
    warden = open_warden(script(MOVE_ACCOUNT), reviewers=DIRECTORY)
    [action] = warden.send("t-medium", f"{HELLO} Move my account to Boston.").pending
    assert action.risk == "medium"
    warden.decide("t-medium", {action.action_id: {"decision": "approve", "reviewer": "ann"}})
    assert store.call("get_user_details", {"user_id": EMMA_ID})["address"]["city"] == "Boston"


def test_requester_cannot_decide_own_action(open_warden, store):
    directory = {**DIRECTORY, "customer": "supervisor", EMMA_ID: "supervisor"}
    warden = open_warden(script(CANCEL), approval_threshold=5000.0, reviewers=directory)
    [action] = warden.send("t-sod", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    for name in ("customer", EMMA_ID):
        with pytest.raises(ReviewerNotAllowedError, match="may not decide"):
            warden.decide("t-sod", {action.action_id: {"decision": "approve", "reviewer": name}})
    assert warden.show_action(action.action_id).requester == "customer"
    assert store.call("get_order_details", {"order_id": EMMA_ORDER})["status"] == "pending"


def test_two_person_rule_needs_two_reviewers(open_warden, store):
    warden = open_warden(script(CANCEL), reviewers=DIRECTORY)
    [action] = warden.send("t-two", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    assert action.verdict.approvals_required == 2
    warden.decide("t-two", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    with pytest.raises(ResumeError, match="different reviewer"):
        warden.decide("t-two", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    record = warden.show_action(action.action_id)
    assert record.state == "pending"
    assert record.reviewers == ["alice"]
    assert refunds(store) == []
    warden.decide("t-two", {action.action_id: {"decision": "approve", "reviewer": "bob"}})
    record = warden.show_action(action.action_id)
    assert record.state == "approved"
    assert record.reviewers == ["alice", "bob"]
    assert len(refunds(store)) == 1


def test_expired_request_never_runs(open_warden, store):
    warden = open_warden(
        script(CANCEL, answer="Your request expired."),
        approval_threshold=5000.0, reviewers=DIRECTORY, approval_deadlines={"high": 0.0, "medium": 60.0, "low": 60.0},
    )
    before = store.checksum()
    [action] = warden.send("t-expire", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    with pytest.raises(ApprovalExpiredError, match=action.action_id) as raised:
        warden.decide("t-expire", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    assert "stored in the thread's answer" in str(raised.value)
    assert "customer was told" not in str(raised.value)
    assert warden.show_action(action.action_id).state == "expired"
    assert warden.current_interrupt("t-expire") is None
    [result] = warden.graph.get_state(warden._config("t-expire")).values["results"]
    assert result.status == "expired"
    assert tool_bodies(warden, "t-expire")[action.action_id][0]["status"] == "expired"
    answer = warden.messages("t-expire")[-1].content
    assert answer.startswith("Your request expired.")
    assert answer.endswith(f"Not done: cancel pending order {EMMA_ORDER}, because it was not approved in time.")
    assert store.checksum() == before
    with pytest.raises(ApprovalConflictError, match="already decided \\(expired\\)"):
        warden.decide("t-expire", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    assert store.checksum() == before


def test_expire_due_moves_thread_on(open_warden, store):
    warden = open_warden(script(CANCEL), approval_threshold=5000.0, reviewers=DIRECTORY)
    before = store.checksum()
    [action] = warden.send("t-due", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    assert warden.expire_due() == []
    later = datetime.now(timezone.utc) + timedelta(days=2)
    assert warden.expire_due(now=later) == ["t-due"]
    assert warden.show_action(action.action_id).state == "expired"
    assert warden.current_interrupt("t-due") is None
    assert warden.pending_threads() == []
    assert store.checksum() == before


def test_pending_listed_by_role_and_age(open_warden):
    warden = open_warden(
        {**script(CANCEL), "PlanOutput": [CANCEL, MOVE_ACCOUNT]}, approval_threshold=5000.0, reviewers=DIRECTORY
    )
    [cancel] = warden.send("t-list-1", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    [move] = warden.send("t-list-2", f"{HELLO} Move my account to Boston.").pending
    assert [r.action_id for r in warden.list_pending()] == [cancel.action_id, move.action_id]
    assert [r.action_id for r in warden.list_pending(role="agent")] == [move.action_id]
    assert warden.list_pending(min_age_seconds=3600) == []
    record = warden.show_action(cancel.action_id)
    assert record.context["message"] == f"{HELLO} Cancel {EMMA_ORDER}."
    assert record.context["plan"]["steps"][-1]["tool"] == "cancel_pending_order"
    assert record.context["verdict"]["rule"] == "approval.write"
    assert record.tenant == "default"
    assert record.thread_id == "t-list-1"
    with pytest.raises(KeyError, match="act_missing"):
        warden.show_action("act_missing")


def test_changed_action_is_not_executed(open_warden, store):
    warden = open_warden(script(CANCEL), approval_threshold=5000.0, reviewers=DIRECTORY)
    [action] = warden.send("t-digest", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    config = warden._config("t-digest")
    changed = action.model_copy(update={"arguments": {"order_id": EMMA_ORDER, "reason": "ordered by mistake"}})
    # The pending action in the checkpoint is swapped after the request was recorded.
    warden.graph.update_state(config, {"pending": [changed]}, as_node="check_policy")
    warden.graph.invoke(None, config, context=warden.context)
    warden.decide("t-digest", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    [result] = warden.graph.get_state(config).values["results"]
    assert result.status == "denied"
    assert result.error.startswith("approval.digest_mismatch")
    assert store.call("get_order_details", {"order_id": EMMA_ORDER})["status"] == "pending"


def test_scope_not_granted_blocks_even_approved(open_warden, settings, store):
    from tests.governance.conftest import refunds as order_refunds

    warden = open_warden(script(CANCEL), approval_threshold=5000.0, reviewers=DIRECTORY)
    [action] = warden.send("t-scope", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    # The grant is withdrawn while the action waits for its reviewer.
    narrowed = {f"{settings.tenant}/{settings.channel}": frozenset({"users:read", "orders:read"})}
    narrow = open_warden(script(CANCEL), approval_threshold=5000.0, reviewers=DIRECTORY, scope_grants=narrowed)
    narrow.decide("t-scope", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    [result] = narrow.graph.get_state(narrow._config("t-scope")).values["results"]
    assert result.status == "denied"
    assert result.error.startswith("scope.not_granted")
    assert order_refunds(store) == []


def test_cli_reports_closed_action(open_warden, settings, store, tmp_path, monkeypatch, capsys):
    from warden.cli import main  # noqa: PLC0415 - the CLI reads the environment set below

    warden = open_warden(script(CANCEL), approval_threshold=5000.0)
    [action] = warden.send("t-cli-closed", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    warden.decide("t-cli-closed", {action.action_id: {"decision": "reject", "reviewer": "alice", "reason": "duplicate"}})
    script_file = tmp_path / "script.json"
    script_file.write_text('{"text": ["unused"]}')
    for name, value in {
        "REDIS_URL": settings.redis_url,
        "WARDEN_DATA_DIR": str(settings.data_dir),
        "WARDEN_DB_PATH": str(settings.db_path),
        "WARDEN_INDEX_DIR": str(settings.index_dir),
        "WARDEN_CHAT_MODEL": f"scripted:{script_file}",
        "WARDEN_REVIEWERS": "alice:supervisor,bob:supervisor",
    }.items():
        monkeypatch.setenv(name, value)

    code = main(["approve", "t-cli-closed", action.action_id, "--reviewer", "bob"])

    assert code == 2
    error = capsys.readouterr().err
    assert f"action {action.action_id} is already rejected (by alice)" in error
    assert warden.show_action(action.action_id).state == "rejected"
    assert refunds(store) == []

    assert main(["approve", "t-other", action.action_id, "--reviewer", "bob"]) == 2
    assert "belongs to thread t-cli-closed, not t-other" in capsys.readouterr().err

    assert main(["history", "t-cli-closed"]) == 0
    history = capsys.readouterr().out
    assert "approvals:" in history
    assert f"requested  {action.action_id} cancel_pending_order" in history
    assert f"reject     {action.action_id} cancel_pending_order by alice (supervisor): duplicate" in history


def _order_status(store, order_id: str) -> str:
    return store.call("get_order_details", {"order_id": order_id})["status"]


def test_edit_after_approval_needs_new_approval(open_warden, store):
    warden = open_warden(script(CANCEL))
    [action] = warden.send("t-edit-late", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    assert action.verdict.approvals_required == 2
    warden.decide("t-edit-late", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    edited = {"order_id": EMMA_SECOND_PENDING, "reason": "no longer needed"}

    outcome = warden.decide("t-edit-late", {action.action_id: {"decision": "edit", "arguments": edited, "reviewer": "bob"}})

    # alice approved the proposed order, not bob's; the edit alone must not run.
    assert outcome.status == "awaiting_approval"
    assert outcome.interrupt["approved_by"] == {action.action_id: ["bob"]}
    assert outcome.interrupt["edits"][action.action_id] == {"reviewer": "bob", "arguments": edited}
    assert _order_status(store, EMMA_SECOND_PENDING) == "pending"
    assert _order_status(store, EMMA_ORDER) == "pending"
    assert warden.show_action(action.action_id).state == "pending"

    warden.decide("t-edit-late", {action.action_id: {"decision": "approve", "reviewer": "alice"}})

    assert _order_status(store, EMMA_SECOND_PENDING) == "cancelled"
    assert _order_status(store, EMMA_ORDER) == "pending"
    record = warden.show_action(action.action_id)
    assert record.state == "edited"
    assert record.approved_arguments == edited
    assert [d.decision for d in record.decisions] == ["approve", "edit", "approve"]


def test_editor_cannot_approve_own_edit(open_warden, store):
    warden = open_warden(script(CANCEL))
    [action] = warden.send("t-edit-self", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    edited = {"order_id": EMMA_SECOND_PENDING, "reason": "no longer needed"}
    warden.decide("t-edit-self", {action.action_id: {"decision": "edit", "arguments": edited, "reviewer": "bob"}})
    request = warden.current_interrupt("t-edit-self")
    assert request["edits"][action.action_id]["arguments"] == edited

    with pytest.raises(ResumeError, match="reviewer 'bob' already approved"):
        warden.decide("t-edit-self", {action.action_id: {"decision": "approve", "reviewer": "bob"}})

    assert _order_status(store, EMMA_SECOND_PENDING) == "pending"
    assert warden.show_action(action.action_id).state == "pending"
