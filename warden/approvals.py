"""Approval decisions: the resume value's schema and its validation.

A resume value maps each pending action id to a decision. It is validated in
full before anything is applied, both by the runtime (so a caller gets the
error) and inside the graph (so a raw resume from Studio cannot bypass it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from warden.actions import Decision, PendingAction, PlanStep, current_approvals
from warden.errors import ResumeError, ReviewerNotAllowedError

APPROVAL_INTERRUPT_TYPE = "warden.approval"
APPROVING = frozenset({"approve", "edit"})
"""Decisions that count toward an action's required approvals."""
# Set by the runtime when a deadline passes or the customer withdraws the request;
# neither runs anything, so they need no reviewer role.
_CLOSING = frozenset({"expire", "cancel"})


def _field_errors(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in error.errors())


def awaiting_ids(pending: list[PendingAction], collected: Mapping[str, list[Decision]]) -> list[str]:
    """Return the ids that still need a decision, given the decisions collected so far."""
    waiting = []
    for action in pending:
        entries = collected.get(action.action_id, [])
        if not entries:
            waiting.append(action.action_id)
        elif entries[-1].decision in APPROVING and len(current_approvals(entries)) < action.verdict.approvals_required:
            waiting.append(action.action_id)
    return waiting


def validate_decisions(
    value: Any,
    pending: list[PendingAction],
    context: Any,
    customer_id: str | None,
    collected: Mapping[str, list[Decision]] | None = None,
) -> dict[str, Decision]:
    """Check a resume value against the pending actions and return the decisions.

    Raises ``ResumeError`` naming the offending action id or field when the value
    is not a mapping, names an unknown or already decided id, misses a decision,
    carries an invalid decision, edits arguments into something the tool schema
    or the policy rejects, or is decided by someone who may not decide it.
    """
    collected = collected or {}
    if not isinstance(value, Mapping):
        raise ResumeError(
            f"resume value must map action ids to decisions, got {type(value).__name__}: {value!r:.80}"
        )
    by_id = {action.action_id: action for action in pending}
    waiting = awaiting_ids(pending, collected)
    for action_id in value:
        if action_id not in by_id:
            raise ResumeError(
                f"unknown action id {action_id!r}; pending actions are {sorted(by_id)}"
            )
        if action_id not in waiting:
            raise ResumeError(f"action {action_id!r} is already decided")
    missing = [action_id for action_id in waiting if action_id not in value]
    if missing:
        raise ResumeError(f"missing decision for action(s) {missing}; every pending action needs one")

    decisions: dict[str, Decision] = {}
    for action_id, raw in value.items():
        action = by_id[action_id]
        try:
            decision = raw if isinstance(raw, Decision) else Decision.model_validate(raw)
        except ValidationError as error:
            raise ResumeError(f"invalid decision for {action_id!r}: {_field_errors(error)}") from None
        decisions[action_id] = _check_decision(action, decision, context, customer_id, collected.get(action_id, []))
    return decisions


def _check_decision(
    action: PendingAction,
    decision: Decision,
    context: Any,
    customer_id: str | None,
    earlier: list[Decision],
) -> Decision:
    action_id = action.action_id
    if decision.decision in _CLOSING:
        if decision.arguments is not None:
            raise ResumeError(f"decision {decision.decision!r} for {action_id!r} takes no 'arguments'")
        return decision
    requester = getattr(context, "requester", None)
    if decision.reviewer in {requester, customer_id}:
        raise ReviewerNotAllowedError(
            f"reviewer {decision.reviewer!r} requested action {action_id!r} and may not decide it"
        )
    rules = getattr(context, "approval_rules", None)
    if rules is not None:
        role = rules.role_of(decision.reviewer, action_id, decision.role)
        rules.check_role(role, action.risk, action_id, decision.reviewer)
        decision = decision.model_copy(update={"role": role})
    if any(entry.reviewer == decision.reviewer for entry in current_approvals(earlier)):
        raise ResumeError(
            f"reviewer {decision.reviewer!r} already approved {action_id!r}; "
            "a second, different reviewer must approve it"
        )
    if decision.decision == "reject" and not (decision.reason or "").strip():
        raise ResumeError(f"decision 'reject' for {action_id!r} needs a non-empty 'reason'")
    if decision.decision == "respond" and not (decision.message or "").strip():
        raise ResumeError(f"decision 'respond' for {action_id!r} needs a non-empty 'message'")
    if decision.decision != "edit":
        if decision.arguments is not None:
            raise ResumeError(f"decision {decision.decision!r} for {action_id!r} takes no 'arguments'; use 'edit'")
        return decision
    if decision.arguments is None:
        raise ResumeError(f"decision 'edit' for {action_id!r} needs 'arguments'")

    spec = context.tools[action.tool]
    try:
        arguments = spec.args_schema.model_validate(decision.arguments).model_dump()
    except ValidationError as error:
        raise ResumeError(
            f"edited arguments for {action_id!r} ({action.tool}) are invalid: {_field_errors(error)}"
        ) from None
    verdict = context.policy.check(PlanStep(tool=action.tool, arguments=arguments), customer_id)
    if verdict.verdict == "deny":
        raise ResumeError(
            f"edited arguments for {action_id!r} break policy rule {verdict.rule}: {verdict.reason}"
        )
    if verdict.approvals_required > action.verdict.approvals_required:
        raise ResumeError(
            f"edited arguments for {action_id!r} need {verdict.approvals_required} approvals "
            f"({verdict.reason}); reject and let the agent propose it again"
        )
    return decision.model_copy(update={"arguments": arguments})
