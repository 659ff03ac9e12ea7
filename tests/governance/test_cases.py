"""Hard approval cases: revised plans, several actions, stale resumes, new messages, reruns, timeouts."""

from __future__ import annotations

import dataclasses

import pytest

from tests.governance.conftest import (
    EMMA_DELIVERED,
    EMMA_GIFT_CARD,
    EMMA_ID,
    EMMA_ORDER,
    EMMA_SECOND_PENDING,
    HELLO,
    NEW_ADDRESS,
    assert_one_result_per_call,
    plan,
    refunds,
    script,
    step,
    tool_bodies,
)
from tools.base import RetryableToolError
from tools.retail import RETAIL_TOOLS, RetailStore
from warden.errors import ResumeError, ThreadStateError

APPROVE = {"decision": "approve", "reviewer": "alice"}


def _values(warden, thread_id):
    return warden.graph.get_state(warden._config(thread_id)).values


def test_revised_twice_then_approved_cancels_once(open_warden, store):
    cancel = lambda reason: plan(step("cancel_pending_order", order_id=EMMA_ORDER, reason=reason))  # noqa: E731
    warden = open_warden(
        script(cancel("ordered by mistake"), cancel("no longer needed"), cancel("ordered by mistake")),
        approval_threshold=5000.0,
    )
    first = warden.send("t-1", f"{HELLO} Please cancel {EMMA_ORDER}.")
    [action] = first.pending
    second = warden.decide("t-1", {action.action_id: {"decision": "respond", "message": "change the reason", "reviewer": "alice"}})
    [action] = second.pending
    third = warden.decide("t-1", {action.action_id: {"decision": "respond", "message": "change the reason", "reviewer": "alice"}})
    [action] = third.pending
    assert warden.current_interrupt("t-1")["round"] == 3
    done = warden.decide("t-1", {action.action_id: APPROVE})

    assert done.status == "answered"
    requested = [e for e in warden.ledger.events("t-1") if e["event"] == "approval_requested"]
    assert [e["round"] for e in requested] == [1, 2, 3]
    assert len({e["action_id"] for e in requested}) == 3
    revisions = [warden.show_action(e["action_id"]).context["plan"]["revision"] for e in requested]
    assert revisions == [1, 2, 3]
    assert warden.context.chat_model.calls.count("PlanOutput") == 3
    assert warden.context.chat_model.calls.count("IntentOutput") == 1
    order = store.call("get_order_details", {"order_id": EMMA_ORDER})
    assert order["status"] == "cancelled"
    assert order["cancel_reason"] == "ordered by mistake"
    assert len(refunds(store)) == 1


def test_three_actions_decided_in_one_resume(open_warden, store):
    warden = open_warden(
        script(plan(
            step("modify_pending_order_address", order_id=EMMA_ORDER, **NEW_ADDRESS),
            step("modify_user_address", user_id=EMMA_ID, **NEW_ADDRESS),
            step("cancel_pending_order", order_id=EMMA_SECOND_PENDING, reason="no longer needed"),
        )),
        approval_threshold=5000.0,
    )
    user_before = store.call("get_user_details", {"user_id": EMMA_ID})["address"]
    outcome = warden.send("t-2", f"{HELLO} Move {EMMA_ORDER} and my account to Boston, cancel {EMMA_SECOND_PENDING}.")
    ids = [action.action_id for action in outcome.pending]
    assert [action.tool for action in outcome.pending] == [
        "modify_pending_order_address", "modify_user_address", "cancel_pending_order",
    ]
    assert len(set(ids)) == 3

    warden.decide("t-2", {
        ids[0]: APPROVE,
        ids[1]: {"decision": "reject", "reason": "keep the account address", "reviewer": "alice"},
        ids[2]: APPROVE,
    })
    assert store.call("get_order_details", {"order_id": EMMA_ORDER})["address"]["city"] == "Boston"
    assert store.call("get_user_details", {"user_id": EMMA_ID})["address"] == user_before
    assert store.call("get_order_details", {"order_id": EMMA_SECOND_PENDING})["status"] == "cancelled"
    assert store.effect_count(f"t-2:{ids[0]}") == 1
    assert store.effect_count(f"t-2:{ids[1]}") == 0
    assert store.effect_count(f"t-2:{ids[2]}") == 1
    assert [warden.show_action(action_id).state for action_id in ids] == ["approved", "rejected", "approved"]
    bodies = tool_bodies(warden, "t-2")
    assert [body["decision"] for body in bodies[ids[0]]] == ["approve"]
    assert [body["decision"] for body in bodies[ids[1]]] == ["reject"]
    assert bodies[ids[1]][0]["reason"] == "keep the account address"
    assert [body["decision"] for body in bodies[ids[2]]] == ["approve"]
    assert_one_result_per_call(warden, "t-2")


def test_unknown_action_id_is_refused(open_warden, store):
    warden = open_warden(script(plan(step("cancel_pending_order", order_id=EMMA_ORDER, reason="no longer needed"))))
    [action] = warden.send("t-3a", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    before = store.checksum()
    checkpoint = warden.graph.get_state(warden._config("t-3a")).config["configurable"]["checkpoint_id"]

    with pytest.raises(ResumeError, match="'act_0000000000000000'"):
        warden.decide("t-3a", {"act_0000000000000000": APPROVE})
    assert warden.current_interrupt("t-3a")["actions"][0]["action_id"] == action.action_id
    assert warden.graph.get_state(warden._config("t-3a")).config["configurable"]["checkpoint_id"] == checkpoint
    assert store.checksum() == before
    assert warden.show_action(action.action_id).state == "pending"


def test_retry_without_value_keeps_second_question(open_warden, store):
    # Above the $500 threshold the cancel asks twice: approve, then confirm with a second reviewer.
    warden = open_warden(script(plan(step("cancel_pending_order", order_id=EMMA_ORDER, reason="no longer needed"))))
    [action] = warden.send("t-3b", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    assert action.verdict.approvals_required == 2
    warden.decide("t-3b", {action.action_id: APPROVE})
    second = warden.current_interrupt("t-3b")
    assert second["awaiting_second_approval"] == [action.action_id]

    config = warden._config("t-3b")
    # NOTE: Command(resume=None) is not tried: langgraph 1.2.24 raises
    # UnboundLocalError (resume_is_map) on it before reaching the graph.
    warden.graph.invoke(None, config, context=warden.context)
    with pytest.raises(ResumeError):
        warden.decide("t-3b", None)

    request = warden.current_interrupt("t-3b")
    assert request["awaiting_second_approval"] == [action.action_id]
    assert request["approved_by"] == {action.action_id: ["alice"]}
    assert warden.show_action(action.action_id).reviewers == ["alice"]
    assert store.call("get_order_details", {"order_id": EMMA_ORDER})["status"] == "pending"
    warden.decide("t-3b", {action.action_id: {"decision": "approve", "reviewer": "bob"}})
    assert len(refunds(store)) == 1


def test_message_during_approval_is_refused_then_cancelled(open_warden, store):
    items = store.call("get_order_details", {"order_id": EMMA_DELIVERED})["items"]
    warden = open_warden(
        {
            **script(
                plan(step(
                    "return_delivered_order_items", order_id=EMMA_DELIVERED,
                    item_ids=[items[0]["item_id"]], payment_method_id=EMMA_GIFT_CARD,
                )),
                {"steps": [step("get_order_details", order_id=EMMA_SECOND_PENDING)]},
                {"steps": []},
                intent="return_items",
            ),
            "IntentOutput": [
                {"intent": "return_items", "entities": {"first_name": "Emma", "last_name": "Smith"}},
                {"intent": "order_question", "entities": {}},
            ],
        },
        approval_threshold=5000.0,
    )
    before = store.checksum()
    [action] = warden.send("t-4", f"{HELLO} I want to return an item of {EMMA_DELIVERED}.").pending

    with pytest.raises(ThreadStateError, match="waiting for approval"):
        warden.send("t-4", "actually, where is my other order?")
    assert warden.current_interrupt("t-4") is not None
    closed = warden.cancel_pending("t-4")
    assert closed.status == "answered"
    assert warden.show_action(action.action_id).state == "cancelled"
    assert tool_bodies(warden, "t-4")[action.action_id][0]["status"] == "cancelled"

    answered = warden.send("t-4", f"actually, where is my other order {EMMA_SECOND_PENDING}?")
    assert answered.status == "answered"
    assert store.checksum() == before
    assert_one_result_per_call(warden, "t-4")


def test_rejected_cancel_never_runs_by_any_route(open_warden, store):
    warden = open_warden(
        script(plan(
            step("cancel_pending_order", order_id=EMMA_ORDER, reason="no longer needed"),
            step("modify_pending_order_address", order_id=EMMA_SECOND_PENDING, **NEW_ADDRESS),
        ), {"steps": []}),
        approval_threshold=5000.0,
    )
    cancel, address = warden.send("t-5", f"{HELLO} Cancel {EMMA_ORDER} and move {EMMA_SECOND_PENDING}.").pending
    warden.decide("t-5", {
        cancel.action_id: {"decision": "reject", "reason": "order already packed", "reviewer": "alice"},
        address.action_id: APPROVE,
    })
    config = warden._config("t-5")

    # A retry of the execution node from the checkpoint before it.
    before_execute = next(s for s in warden.graph.get_state_history(config) if s.next == ("execute_actions",))
    warden.graph.invoke(None, before_execute.config, context=warden.context)
    # An explicit jump with a forged approval written into the state.
    forged = {
        cancel.action_id: {"decision": "approve", "reviewer": "mallory"},
        address.action_id: {"decision": "approve", "reviewer": "alice"},
    }
    warden.graph.update_state(config, {"decisions": forged}, as_node="request_approval")
    warden.graph.invoke(None, config, context=warden.context)

    assert store.call("get_order_details", {"order_id": EMMA_ORDER})["status"] == "pending"
    assert refunds(store) == []
    assert store.effect_count(f"t-5:{cancel.action_id}") == 0
    assert store.effect_count(f"t-5:{address.action_id}") == 1
    assert warden.journal.get("t-5", address.action_id).attempts == 1
    [rejected] = tool_bodies(warden, "t-5")[cancel.action_id]
    assert rejected["status"] == "rejected"
    assert rejected["reviewer"] == "alice"
    assert rejected["reason"] == "order already packed"
    assert_one_result_per_call(warden, "t-5")
    assert warden.send("t-5", "Thanks, anything else I should know?").status == "answered"


class _TimeoutAfterCommitStore(RetailStore):
    """A real store whose writes commit and then report a timeout, as a lost reply would."""

    def __init__(self, path, **kwargs):
        super().__init__(path, **kwargs)
        self.write_keys: list[str | None] = []
        self.read_failures_left = 0

    def call(self, tool, arguments, *, idempotency_key=None):
        if RETAIL_TOOLS[tool].access == "write":
            self.write_keys.append(idempotency_key)
            super().call(tool, arguments, idempotency_key=idempotency_key)
            raise RetryableToolError(f"{tool} timed out waiting for the database reply")
        if self.read_failures_left:
            self.read_failures_left -= 1
            raise RetryableToolError(f"{tool} timed out")
        return super().call(tool, arguments, idempotency_key=idempotency_key)


def test_write_timing_out_after_effect_is_unknown(open_warden, settings, store):
    warden = open_warden(
        script(plan(step("cancel_pending_order", order_id=EMMA_ORDER, reason="no longer needed"))),
        approval_threshold=5000.0,
    )
    flaky = _TimeoutAfterCommitStore(settings.db_path)
    warden.context = dataclasses.replace(warden.context, store=flaky)
    [action] = warden.send("t-6", f"{HELLO} Cancel {EMMA_ORDER}.").pending
    warden.decide("t-6", {action.action_id: APPROVE})

    key = f"t-6:{action.action_id}"
    assert len(refunds(store)) == 1
    assert store.effect_count(key) == 1
    assert flaky.write_keys == [key] * warden.journal.retry.max_attempts
    [result] = _values(warden, "t-6")["results"]
    assert result.status == "unknown"
    [body] = tool_bodies(warden, "t-6")[action.action_id]
    assert body["status"] == "unknown"
    assert "do not repeat" in body["error"]
    assert "try again" not in body["error"].lower()
    assert warden.journal.get("t-6", action.action_id).state == "unknown"


def test_read_timeouts_are_retried(redis_client, settings):
    from warden.journal import EffectJournal, RetryPolicy

    flaky = _TimeoutAfterCommitStore(settings.db_path)
    flaky.read_failures_left = 2
    journal = EffectJournal(redis_client, retry=RetryPolicy(max_attempts=3, backoff_seconds=0.01))
    entry = journal.run(
        "t-6r", "read-1", "get_order_details", {"order_id": EMMA_ORDER},
        lambda key: flaky.call("get_order_details", {"order_id": EMMA_ORDER}), write=False,
    )
    assert entry.state == "done"
    assert entry.attempts == 3
    assert entry.result["order_id"] == EMMA_ORDER


def test_read_retry_helper_retries_then_raises(settings):
    from warden.journal import RetryPolicy, call_with_retries

    flaky = _TimeoutAfterCommitStore(settings.db_path)
    flaky.read_failures_left = 2
    retry = RetryPolicy(max_attempts=3, backoff_seconds=0.01)
    order = call_with_retries(lambda: flaky.call("get_order_details", {"order_id": EMMA_ORDER}), retry, label="order")
    assert order["order_id"] == EMMA_ORDER
    flaky.read_failures_left = 3
    with pytest.raises(RetryableToolError):
        call_with_retries(lambda: flaky.call("get_order_details", {"order_id": EMMA_ORDER}), retry, label="order")
    assert flaky.read_failures_left == 0


def test_write_without_deduplication_is_not_retried(redis_client, settings, store):
    from warden.journal import EffectJournal

    flaky = _TimeoutAfterCommitStore(settings.db_path)
    journal = EffectJournal(redis_client, deduplicating_store=False)
    arguments = {"order_id": EMMA_ORDER, "reason": "no longer needed"}
    entry = journal.run(
        "t-6n", "act-1", "cancel_pending_order", arguments,
        lambda key: flaky.call("cancel_pending_order", arguments, idempotency_key=key),
        write=True, idempotency_key="t-6n:act-1",
    )
    assert entry.state == "unknown"
    assert entry.attempts == 1
    assert len(refunds(store)) == 1
