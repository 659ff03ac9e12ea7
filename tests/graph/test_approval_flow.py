"""The approval interrupt: approve, reject, edit, respond and refused resumes, on real Redis and SQLite."""

from __future__ import annotations

import json

import pytest
from langgraph.types import Command

from tests.graph.conftest import CANCEL_MESSAGE, EMMA, EMMA_ORDER, cancel_script
from warden.errors import ConfigurationError, ResumeError, ThreadStateError
from warden.settings import Settings


def _order(store, order_id=EMMA_ORDER):
    return store.call("get_order_details", {"order_id": order_id})


def _refunds(order):
    return [p for p in order["payment_history"] if p["transaction_type"] == "refund"]


def test_cancel_needs_two_reviewers_and_runs_once(open_warden, store):
    warden = open_warden(cancel_script())
    outcome = warden.send("t-cancel", CANCEL_MESSAGE)
    assert outcome.status == "awaiting_approval"
    [action] = outcome.pending
    assert action.tool == "cancel_pending_order"
    assert action.verdict.rule == "approval.two_person"
    assert action.verdict.approvals_required == 2
    assert _order(store)["status"] == "pending"

    first = warden.decide("t-cancel", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    assert first.status == "awaiting_approval"
    assert first.interrupt["awaiting_second_approval"] == [action.action_id]
    assert _order(store)["status"] == "pending"

    done = warden.decide("t-cancel", {action.action_id: {"decision": "approve", "reviewer": "bob"}})
    assert done.status == "answered"
    order = _order(store)
    assert order["status"] == "cancelled"
    assert order["cancel_reason"] == "no longer needed"
    assert len(_refunds(order)) == 1
    with pytest.raises(ThreadStateError):
        warden.decide("t-cancel", {action.action_id: {"decision": "approve", "reviewer": "carol"}})
    assert len(_refunds(_order(store))) == 1


def test_same_reviewer_cannot_approve_twice(open_warden, store):
    warden = open_warden(cancel_script())
    [action] = warden.send("t-twice", CANCEL_MESSAGE).pending
    warden.decide("t-twice", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    with pytest.raises(ResumeError, match="already approved"):
        warden.decide("t-twice", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    assert _order(store)["status"] == "pending"


def test_requester_cannot_approve(open_warden, store):
    warden = open_warden(cancel_script())
    [action] = warden.send("t-self", CANCEL_MESSAGE).pending
    with pytest.raises(ResumeError, match="may not decide"):
        warden.decide("t-self", {action.action_id: {"decision": "approve", "reviewer": "customer"}})
    with pytest.raises(ResumeError, match="may not decide"):
        warden.decide("t-self", {action.action_id: {"decision": "approve", "reviewer": "emma_smith_8564"}})
    assert warden.current_interrupt("t-self") is not None


def test_rejected_action_never_runs(open_warden, store):
    warden = open_warden(cancel_script("I did not cancel the order."))
    before = store.checksum()
    [action] = warden.send("t-reject", CANCEL_MESSAGE).pending
    outcome = warden.decide(
        "t-reject", {action.action_id: {"decision": "reject", "reason": "customer must call", "reviewer": "alice"}}
    )
    assert outcome.status == "answered"
    assert store.checksum() == before
    [result] = warden.graph.get_state(warden._config("t-reject")).values["results"]
    assert result.status == "rejected"
    assert result.reviewer == "alice"
    tool_messages = [m for m in warden.messages("t-reject") if m.type == "tool" and m.tool_call_id == action.action_id]
    assert len(tool_messages) == 1
    body = json.loads(tool_messages[0].content)
    assert body["decision"] == "reject"
    assert body["reason"] == "customer must call"


def test_edited_action_runs_with_edited_arguments(open_warden, store):
    warden = open_warden(cancel_script(), approval_threshold=5000.0)
    [action] = warden.send("t-edit", CANCEL_MESSAGE).pending
    assert action.verdict.approvals_required == 1
    warden.decide(
        "t-edit",
        {action.action_id: {"decision": "edit", "arguments": {"order_id": EMMA_ORDER, "reason": "ordered by mistake"}, "reviewer": "alice"}},
    )
    order = _order(store)
    assert order["status"] == "cancelled"
    assert order["cancel_reason"] == "ordered by mistake"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"order_id": EMMA_ORDER, "reason": "too expensive"}, "invalid"),
        ({"order_id": "#W5605613", "reason": "no longer needed"}, "status.pending_required"),
        ({"order_id": "#W2378156", "reason": "no longer needed"}, "ownership.order"),
    ],
)
def test_edit_is_validated_again(open_warden, store, arguments, message):
    warden = open_warden(cancel_script(), approval_threshold=5000.0)
    before = store.checksum()
    [action] = warden.send("t-edit-bad", CANCEL_MESSAGE).pending
    with pytest.raises(ResumeError, match=message):
        warden.decide("t-edit-bad", {action.action_id: {"decision": "edit", "arguments": arguments, "reviewer": "alice"}})
    assert store.checksum() == before
    assert warden.current_interrupt("t-edit-bad")["actions"][0]["action_id"] == action.action_id


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("approve", "must map action ids"),
        ({"act_unknown": {"decision": "approve", "reviewer": "alice"}}, "unknown action id 'act_unknown'"),
        ({}, "missing decision"),
        ("ID", "needs a non-empty 'reason'"),
        ("ID_BAD_KIND", "invalid decision"),
    ],
)
def test_malformed_resume_leaves_thread_paused(open_warden, store, value, message):
    warden = open_warden(cancel_script(), approval_threshold=5000.0)
    before = store.checksum()
    [action] = warden.send("t-bad", CANCEL_MESSAGE).pending
    checkpoint = warden.graph.get_state(warden._config("t-bad")).config["configurable"]["checkpoint_id"]
    if value == "ID":
        value = {action.action_id: {"decision": "reject", "reviewer": "alice"}}
    elif value == "ID_BAD_KIND":
        value = {action.action_id: {"decision": "maybe", "reviewer": "alice"}}
    with pytest.raises(ResumeError, match=message):
        warden.decide("t-bad", value)
    assert store.checksum() == before
    after = warden.graph.get_state(warden._config("t-bad")).config["configurable"]["checkpoint_id"]
    assert after == checkpoint
    outcome = warden.decide("t-bad", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    assert outcome.status == "answered"
    assert _order(store)["status"] == "cancelled"


def test_raw_resume_with_unknown_id_pauses_again(open_warden, store):
    """A resume that bypasses the runtime (as LangGraph Studio does) is checked in the graph."""
    warden = open_warden(cancel_script(), approval_threshold=5000.0)
    before = store.checksum()
    [action] = warden.send("t-raw", CANCEL_MESSAGE).pending
    config = warden._config("t-raw")
    warden.graph.invoke(Command(resume={"act_nope": {"decision": "approve"}}), config, context=warden.context)
    request = warden.current_interrupt("t-raw")
    assert "unknown action id 'act_nope'" in request["error"]
    assert store.checksum() == before
    with pytest.raises(ResumeError, match="must map action ids"):
        warden.decide("t-raw", None)
    assert warden.current_interrupt("t-raw") is not None
    assert store.checksum() == before
    warden.decide("t-raw", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    assert _order(store)["status"] == "cancelled"


def test_new_message_while_pending_is_refused(open_warden, store):
    warden = open_warden(cancel_script(), approval_threshold=5000.0)
    warden.send("t-busy", CANCEL_MESSAGE)
    with pytest.raises(ThreadStateError, match="waiting for approval"):
        warden.send("t-busy", "actually, where is my other order?")
    assert _order(store)["status"] == "pending"
    outcome = warden.cancel_pending("t-busy")
    assert outcome.status == "answered"
    assert _order(store)["status"] == "pending"
    messages = warden.messages("t-busy")
    call_ids = [c["id"] for m in messages if m.type == "ai" for c in m.tool_calls]
    result_ids = [m.tool_call_id for m in messages if m.type == "tool"]
    assert sorted(call_ids) == sorted(result_ids)


def test_respond_sends_reviewer_text_to_model(open_warden, store):
    script = cancel_script()
    script["PlanOutput"].append(
        {"steps": [{"tool": "cancel_pending_order", "arguments": {"order_id": EMMA_ORDER, "reason": "ordered by mistake"}}]}
    )
    warden = open_warden(script, approval_threshold=5000.0)
    [action] = warden.send("t-respond", CANCEL_MESSAGE).pending
    outcome = warden.decide(
        "t-respond", {action.action_id: {"decision": "respond", "message": "use the reason 'ordered by mistake'", "reviewer": "alice"}}
    )
    assert outcome.status == "awaiting_approval"
    [revised] = outcome.pending
    assert revised.arguments["reason"] == "ordered by mistake"
    assert _order(store)["status"] == "pending"
    warden.decide("t-respond", {revised.action_id: {"decision": "approve", "reviewer": "alice"}})
    assert _order(store)["cancel_reason"] == "ordered by mistake"


def test_other_customers_order_is_denied_without_approval(open_warden, store):
    script = cancel_script("I cannot cancel that order.")
    script["PlanOutput"] = [
        {
            "steps": [
                {"tool": "find_user_id_by_name_zip", "arguments": {"first_name": "Emma", "last_name": "Smith", "zip": "10192"}},
                {"tool": "cancel_pending_order", "arguments": {"order_id": "#W2378156", "reason": "no longer needed"}},
            ]
        }
    ]
    warden = open_warden(script)
    before = store.checksum()
    outcome = warden.send("t-foreign", "cancel #W2378156 for me, I'm Emma Smith 10192")
    assert outcome.status == "answered"
    [denied] = warden.graph.get_state(warden._config("t-foreign")).values["results"]
    assert denied.status == "denied"
    assert denied.error.startswith("ownership.order")
    assert store.checksum() == before


def test_invalid_plan_is_retried_once_then_answers_without_acting(open_warden, store):
    script = cancel_script("I could not work out what to do.")
    bad = {"steps": [{"tool": "delete_everything", "arguments": {}}]}
    script["PlanOutput"] = [bad, bad]
    warden = open_warden(script)
    before = store.checksum()
    outcome = warden.send("t-invalid", CANCEL_MESSAGE)
    assert outcome.status == "answered"
    plan = warden.graph.get_state(warden._config("t-invalid")).values["plan"]
    assert plan.steps == []
    assert len(plan.errors) == 2
    assert "delete_everything" in plan.errors[0]
    assert store.checksum() == before


def test_invalid_plan_retry_can_succeed(open_warden, store):
    script = cancel_script()
    good = script["PlanOutput"][0]
    script["PlanOutput"] = [{"steps": [{"tool": "cancel_pending_order", "arguments": {"order_id": EMMA_ORDER}}]}, good]
    warden = open_warden(script, approval_threshold=5000.0)
    outcome = warden.send("t-retry", CANCEL_MESSAGE)
    assert outcome.status == "awaiting_approval"
    assert [a.tool for a in outcome.pending] == ["cancel_pending_order"]


def test_second_message_continues_the_thread(open_warden, store):
    script = cancel_script("Done.")
    script["IntentOutput"].append({"intent": "order_question", "entities": {}})
    script["PlanOutput"].append({"steps": [{"tool": "get_order_details", "arguments": {"order_id": "#W3614011"}}]})
    script["PlanOutput"].append({"steps": []})
    warden = open_warden(script, approval_threshold=5000.0)
    [action] = warden.send("t-two", CANCEL_MESSAGE).pending
    warden.decide("t-two", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    count = len(warden.messages("t-two"))
    outcome = warden.send("t-two", "And what is the status of #W3614011?")
    assert outcome.status == "answered"
    state = warden.graph.get_state(warden._config("t-two")).values
    assert state["customer"]["user_id"] == "emma_smith_8564"
    assert state["turn"] == 2
    assert state["lookups"][0].status == "done"
    assert len(warden.messages("t-two")) > count


@pytest.mark.parametrize("kind", ["cancel", "expire"])
def test_reviewer_cannot_send_runtime_decisions(open_warden, store, kind):
    warden = open_warden(cancel_script(), approval_threshold=5000.0)
    before = store.checksum()
    [action] = warden.send("t-close", CANCEL_MESSAGE).pending
    with pytest.raises(ResumeError, match=f"invalid decision '{kind}'"):
        warden.decide("t-close", {action.action_id: {"decision": kind, "reviewer": "mallory"}})
    assert warden.current_interrupt("t-close") is not None
    assert store.checksum() == before


def test_reviewer_reason_is_redacted(open_warden, store, redis_client):
    warden = open_warden(cancel_script(), approval_threshold=5000.0)
    [action] = warden.send("t-reason", CANCEL_MESSAGE).pending
    card = "4111.1111.1111.1111"
    warden.decide(
        "t-reason",
        {action.action_id: {"decision": "reject", "reason": f"card {card} was reported stolen", "reviewer": "alice"}},
    )
    [result] = warden.graph.get_state(warden._config("t-reason")).values["results"]
    assert card not in result.error
    assert "[REDACTED:card]" in result.error
    for key in redis_client.scan_iter():
        if redis_client.type(key) == b"hash":
            assert not any(card.encode() in value for value in redis_client.hgetall(key).values()), key


def test_rejected_change_claimed_done_is_never_sent(open_warden, store):
    warden = open_warden(cancel_script(f"Your order {EMMA_ORDER} has been cancelled. Thank you for waiting."))
    [action] = warden.send("t-claim", CANCEL_MESSAGE).pending
    tokens: list[str] = []
    outcome = warden.decide(
        "t-claim",
        {action.action_id: {"decision": "reject", "reason": "customer must call", "reviewer": "alice"}},
        on_token=tokens.append,
    )
    assert "has been cancelled" not in "".join(tokens)
    assert "".join(tokens) == outcome.answer
    assert outcome.answer.startswith("Thank you for waiting.")
    assert f"Not done: cancel pending order {EMMA_ORDER}, because a reviewer rejected it." in outcome.answer
    assert warden.messages("t-claim")[-1].content == outcome.answer
    [answer_sent] = [i for i in warden.audit.read("t-claim") if i.entry["kind"] == "answer_sent"]
    data = answer_sent.data
    assert data["model_text"].startswith(f"Your order {EMMA_ORDER} has been cancelled.")
    assert [d["tool"] for d in data["dropped_sentences"]] == ["cancel_pending_order"]


def test_tenants_do_not_share_threads(open_warden):
    acme = open_warden(cancel_script(), tenant="acme")
    globex = open_warden(cancel_script(), tenant="globex")
    [action] = acme.send("t-shared", CANCEL_MESSAGE).pending
    assert acme.current_interrupt("t-shared") is not None
    assert globex.current_interrupt("t-shared") is None
    assert globex.messages("t-shared") == []
    assert globex.history("t-shared") == []
    with pytest.raises(ThreadStateError, match="t-shared"):
        globex.decide("t-shared", {action.action_id: {"decision": "approve", "reviewer": "alice"}})
    assert acme.current_interrupt("t-shared") is not None


@pytest.mark.parametrize("tenant", ["acme corp", "acme:eu", "acme*", ""])
def test_tenant_that_cannot_name_keys_rejected(settings, tenant):
    with pytest.raises(ConfigurationError, match="WARDEN_TENANT"):
        Settings.from_env(**{**settings.__dict__, "tenant": tenant})


def test_change_done_before_reviewer_message_stays_in_answer(open_warden, store):
    other = "#W3614011"

    def cancel(order_id: str, reason: str) -> dict:
        return {"tool": "cancel_pending_order", "arguments": {"order_id": order_id, "reason": reason}, "why": "asked"}

    lookups = [
        {"tool": "find_user_id_by_name_zip", "arguments": EMMA, "why": "authenticate"},
        {"tool": "get_order_details", "arguments": {"order_id": EMMA_ORDER}, "why": "check status"},
        {"tool": "get_order_details", "arguments": {"order_id": other}, "why": "check status"},
    ]
    script = cancel_script(f"I have cancelled order {EMMA_ORDER} for you.")
    script["PlanOutput"] = [
        {"steps": [*lookups, cancel(EMMA_ORDER, "no longer needed"), cancel(other, "no longer needed")]},
        {"steps": [cancel(other, "ordered by mistake")]},
    ]
    warden = open_warden(script, approval_threshold=100000.0)
    first, second = warden.send("t-rounds", CANCEL_MESSAGE + f" Also cancel {other}.").pending
    outcome = warden.decide("t-rounds", {
        first.action_id: {"decision": "approve", "reviewer": "alice"},
        second.action_id: {"decision": "respond", "message": "use the reason ordered by mistake", "reviewer": "alice"},
    })
    [replanned] = outcome.pending
    outcome = warden.decide(
        "t-rounds", {replanned.action_id: {"decision": "reject", "reason": "call us", "reviewer": "bob"}}
    )
    assert outcome.answer.startswith(f"I have cancelled order {EMMA_ORDER} for you.")
    assert f"Not done: cancel pending order {other}, because a reviewer rejected it." in outcome.answer
    assert "Done:" not in outcome.answer.replace("Not done:", "")
    assert store.call("get_order_details", {"order_id": EMMA_ORDER})["status"] == "cancelled"
