"""Governance steps the support graph's approval and execution nodes share.

The nodes stay thin: this module registers pending actions in the approval
ledger, decides from the ledger whether an approved action may run, and runs
it through the effect journal.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tools.base import ToolError
from warden.actions import ActionResult, Decision, PendingAction, PlanStep, action_digest
from warden.journal import UNKNOWN_OUTCOME
from warden.ledger import ApprovalRecord, ApprovalRules, new_record

logger = logging.getLogger(__name__)

_CLOSED_STATUS = {"rejected": "rejected", "responded": "responded", "expired": "expired", "cancelled": "cancelled"}


def register_requests(
    context: Any,
    pending: list[PendingAction],
    *,
    thread_id: str,
    round_number: int,
    customer_id: str | None,
    request_context: Mapping[str, Any],
) -> dict[str, ApprovalRecord]:
    """Record each pending action in the ledger once and return the records by action id.

    Safe to call again for the same actions: LangGraph re-runs the approval
    node from its start on every resume, and a record that exists is returned
    unchanged.
    """
    if context.ledger is None:
        return {}
    rules = context.approval_rules or ApprovalRules()
    records = {}
    for action in pending:
        record = new_record(
            action,
            tenant=context.tenant,
            thread_id=thread_id,
            round_number=round_number,
            policy_version=context.policy.version,
            requester=context.requester,
            customer_id=customer_id,
            rules=rules,
            context={**request_context, "rationale": action.rationale, "verdict": action.verdict.model_dump()},
        )
        records[action.action_id], _created = context.ledger.request(record)
    return records


@dataclass
class Clearance:
    """Whether one action may run now, with what arguments, and the decision behind it."""

    decision: Decision | None
    arguments: dict[str, Any]
    status: str | None = None
    """None when the action may run, else the result status to record instead."""
    error: str | None = None


def clear_for_execution(
    context: Any,
    action: PendingAction,
    decision: Decision | None,
    customer_id: str | None,
    thread_id: str | None = None,
) -> Clearance:
    """Decide whether ``action`` may run, from the ledger when there is one.

    The ledger, not the graph state, is the authority: a decision written
    into the state by a jump or a state update does not make a rejected or
    undecided action run. The policy is checked again on the live database,
    because the world may have changed while the approval waited, unless the
    journal shows the call already started: then its own effect would fail
    the check, and the journal returns or recovers the recorded outcome.
    """
    arguments = action.arguments
    if context.ledger is not None:
        record = context.ledger.get(action.action_id)
        if record is None:
            return Clearance(decision, arguments, "denied", "approval.not_recorded: the ledger has no record of this action")
        if record.state in _CLOSED_STATUS:
            final = record.final_decision
            reason = (final.reason or final.message or "") if final else ""
            who = final.reviewer if final else "unknown"
            return Clearance(final, arguments, _CLOSED_STATUS[record.state], f"{record.state} by {who}: {reason}")
        if record.state == "pending":
            return Clearance(decision, arguments, "denied", "approval.not_decided: the action is still waiting for a reviewer")
        decision = record.final_decision
        proposed = action_digest(action.tool, action.arguments, action.step_index, context.policy.version)
        arguments = record.approved_arguments or record.arguments
        approved = action_digest(action.tool, arguments, action.step_index, context.policy.version)
        # The state's action must still be the one recorded, and what runs must be what was approved.
        if record.digest != proposed or record.digest != action.digest or record.approved_digest != approved:
            return Clearance(decision, arguments, "denied", "approval.digest_mismatch: the action changed after it was approved")
    else:
        if decision is None:
            return Clearance(None, arguments, "denied", "approval.not_decided: no decision for this action")
        if decision.decision in ("reject", "respond", "expire", "cancel"):
            status = {"reject": "rejected", "respond": "responded", "expire": "expired", "cancel": "cancelled"}[decision.decision]
            return Clearance(decision, arguments, status, f"{status} by {decision.reviewer}: {decision.reason or ''}")
        if decision.decision == "edit" and decision.arguments is not None:
            arguments = decision.arguments
        elif action_digest(action.tool, arguments, action.step_index, context.policy.version) != action.digest:
            return Clearance(decision, arguments, "denied", "approval.digest_mismatch: the action changed after it was approved")

    if context.journal is not None and thread_id is not None:
        entry = context.journal.get(thread_id, action.action_id)
        if entry is not None and entry.state != "intended":
            return Clearance(decision, arguments)
    verdict = context.policy.check(PlanStep(tool=action.tool, arguments=arguments), customer_id)
    if verdict.verdict == "deny":
        return Clearance(decision, arguments, "denied", f"{verdict.rule}: {verdict.reason}")
    return Clearance(decision, arguments)


def run_action(context: Any, thread_id: str, action: PendingAction, arguments: dict[str, Any], reviewer: str | None) -> ActionResult:
    """Run a cleared action exactly once and return its result.

    With a journal the call goes through it; without one, only the store's
    idempotency key ``thread:action`` guards against a second effect.
    """
    key = f"{thread_id}:{action.action_id}"
    base = {"action_id": action.action_id, "tool": action.tool, "arguments": arguments, "reviewer": reviewer, "idempotency_key": key}
    if context.journal is None:
        try:
            output = context.store.call(action.tool, arguments, idempotency_key=key)
        except ToolError as error:
            return ActionResult(**base, status="failed", error=str(error))
        return ActionResult(**base, status="done", output=output)

    def call(idempotency_key: str | None) -> Any:
        return context.store.call(action.tool, arguments, idempotency_key=idempotency_key)

    entry = context.journal.run(thread_id, action.action_id, action.tool, arguments, call, write=True, idempotency_key=key)
    if entry.state == "done":
        return ActionResult(**base, status="done", output=entry.result)
    if entry.state == "unknown":
        return ActionResult(**base, status="unknown", error=entry.error or UNKNOWN_OUTCOME)
    return ActionResult(**base, status="failed", error=entry.error)


def record_outcome(context: Any, thread_id: str, result: ActionResult) -> None:
    """Append the execution outcome of one action to the thread's audit events."""
    if context.ledger is None:
        return
    # A re-run of the execution node reports the same outcome; record it once.
    marker = f"warden:{context.tenant}:outcome:{thread_id}:{result.action_id}:{result.status}"
    if not context.ledger.client.set(marker, 1, nx=True):
        return
    context.ledger.record_event(
        thread_id, f"action_{result.status}", action_id=result.action_id, tool=result.tool,
        reviewer=result.reviewer, error=result.error,
    )
