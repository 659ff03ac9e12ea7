"""Read models of the HTTP service: thread state and pending approvals, built from the runtime.

A tenant's public thread id ``t-1`` is stored as ``<tenant>/t-1`` in the
checkpoints and the approval ledger, so tenants never share a thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from warden.approvals import APPROVAL_INTERRUPT_TYPE
from warden.ledger import ApprovalRecord
from warden.runtime import Warden
from warden.service.auth import Principal
from warden.service.schemas import (
    ActionResultOut,
    ApprovalActionOut,
    ApprovalOut,
    CitedPassage,
    MessageOut,
    PlanStepOut,
    ThreadStateOut,
    ToolCallOut,
    VerdictOut,
)

RISK_RANK = {"low": 0, "medium": 1, "high": 2}


def internal_thread_id(tenant: str, thread_id: str) -> str:
    return f"{tenant}/{thread_id}"


def public_thread_id(internal: str) -> str:
    return internal.partition("/")[2]


def thread_config(internal: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": internal}}


def approval_request(snapshot: Any) -> dict[str, Any] | None:
    """Return the approval interrupt a state snapshot is paused on, or None."""
    for item in snapshot.interrupts:
        if isinstance(item.value, dict) and item.value.get("type") == APPROVAL_INTERRUPT_TYPE:
            return item.value
    return None


def may_decide(principal: Principal, risk: str, review_roles: Mapping[str, Iterable[str]]) -> bool:
    """Return whether ``principal``'s role may decide an action of ``risk``."""
    if principal.is_admin:
        return True
    return principal.role in set(review_roles.get(risk, ()))


def _message_out(message: Any) -> MessageOut:
    content = message.content if isinstance(message.content, str) else str(message.content)
    calls = [
        ToolCallOut(id=call.get("id"), name=call["name"], args=call.get("args") or {})
        for call in getattr(message, "tool_calls", None) or []
    ]
    return MessageOut(
        type=message.type,
        content=content,
        tool_calls=calls,
        tool_call_id=getattr(message, "tool_call_id", None),
        name=getattr(message, "name", None),
    )


def results_out(values: Mapping[str, Any]) -> list[ActionResultOut]:
    return [
        ActionResultOut(
            action_id=result.action_id,
            tool=result.tool,
            arguments=result.arguments,
            status=result.status,
            reviewer=result.reviewer,
            output=result.output,
            error=result.error,
        )
        for result in values.get("results", [])
    ]


def _records_by_action(runtime: Warden, action_ids: Iterable[str]) -> dict[str, ApprovalRecord]:
    records = {}
    for action_id in action_ids:
        record = runtime.ledger.get(action_id)
        if record is not None:
            records[action_id] = record
    return records


def approval_view(
    runtime: Warden,
    principal: Principal,
    tenant: str,
    internal: str,
    request: Mapping[str, Any],
    values: Mapping[str, Any],
    *,
    now: datetime | None = None,
) -> ApprovalOut:
    """Describe the approval ``internal`` is paused on, as ``principal`` may act on it.

    Times come from the approval ledger; an action without a record (a
    request made before the ledger existed) counts from the checkpoint time.
    """
    now = now or datetime.now(timezone.utc)
    review_roles = runtime.settings.review_roles
    waiting_ids = set(request.get("awaiting_second_approval") or [a["action_id"] for a in request["actions"]])
    approved_by = request.get("approved_by") or {}
    edits = request.get("edits") or {}
    records = _records_by_action(runtime, waiting_ids)
    fallback = now
    created = min((r.created_at for r in records.values()), default=fallback)
    expires = min((r.expires_at for r in records.values()), default=fallback)

    actions = []
    for action in request["actions"]:
        waiting = action["action_id"] in waiting_ids
        can_decide = waiting and may_decide(principal, action["risk"], review_roles)
        edit = edits.get(action["action_id"])
        actions.append(ApprovalActionOut(
            action_id=action["action_id"],
            tool=action["tool"],
            arguments=edit["arguments"] if edit else action["arguments"],
            proposed_arguments=action["arguments"],
            edited_by=edit["reviewer"] if edit else None,
            risk=action["risk"],
            scope=action["scope"],
            irreversible=action["irreversible"],
            rationale=action["rationale"],
            citations=action["citations"],
            verdict=VerdictOut(**{key: action["verdict"][key] for key in VerdictOut.model_fields}),
            approved_by=list(approved_by.get(action["action_id"], [])),
            waiting=waiting,
            can_decide=can_decide,
            editable=can_decide and action["verdict"]["verdict"] == "needs_approval",
        ))
    risks = [a.risk for a in actions if a.waiting] or [a.risk for a in actions]
    plan = values.get("plan")
    return ApprovalOut(
        thread_id=public_thread_id(internal),
        tenant=tenant,
        round=request.get("round", 1),
        customer=request.get("customer"),
        message=request.get("message", ""),
        created_at=created,
        expires_at=expires,
        age_seconds=max(0.0, (now - created).total_seconds()),
        expired=bool(records) and expires <= now,
        risk=max(risks, key=lambda risk: RISK_RANK.get(risk, 0)),
        policy_version=str(request.get("policy_version", "")),
        error=request.get("error"),
        plan=[
            PlanStepOut(tool=step.tool, arguments=step.arguments, why=step.why, citations=step.citations)
            for step in (plan.steps if plan is not None else [])
        ],
        actions=actions,
        citations={
            chunk_id: CitedPassage(title=c.get("title", ""), source=c.get("source", ""), text=c.get("text", ""))
            for chunk_id, c in (request.get("citations") or {}).items()
        },
    )


def thread_state(runtime: Warden, principal: Principal, tenant: str, internal: str) -> ThreadStateOut:
    """Return the thread's status, conversation, last answer and pending approval."""
    snapshot = runtime.graph.get_state(thread_config(internal))
    values = snapshot.values or {}
    request = approval_request(snapshot)
    approval = approval_view(runtime, principal, tenant, internal, request, values) if request else None
    if request is not None:
        status = "awaiting_approval"
    elif values.get("messages"):
        status = "idle"
    else:
        status = "new"
    return ThreadStateOut(
        thread_id=public_thread_id(internal),
        status=status,
        answer=values.get("answer", "") if request is None else "",
        messages=[_message_out(message) for message in values.get("messages", [])],
        approval=approval,
        results=results_out(values),
    )


def pending_approvals(
    runtime: Warden,
    principal: Principal,
    tenant: str,
    *,
    role: str | None,
    min_age_seconds: float,
    max_age_seconds: float | None,
    risk: str | None,
) -> list[ApprovalOut]:
    """List the tenant's paused threads for the caller, oldest first, higher risk first on ties.

    A thread is listed when the caller's role may decide at least one of its
    waiting actions, and ``role`` narrows the list to what that role may
    decide. Expired requests stay listed, marked ``expired``, until someone
    decides or expires them.
    """
    now = datetime.now(timezone.utc)
    records = runtime.ledger.list_pending(
        role=role, rules=runtime.context.approval_rules, min_age_seconds=min_age_seconds, now=now
    )
    prefix = f"{tenant}/"
    threads = list(dict.fromkeys(r.thread_id for r in records if r.thread_id.startswith(prefix)))
    views = []
    for internal in threads:
        snapshot = runtime.graph.get_state(thread_config(internal))
        request = approval_request(snapshot)
        if request is None:
            continue
        values = snapshot.values or {}
        view = approval_view(runtime, principal, tenant, internal, request, values, now=now)
        if not any(action.can_decide for action in view.actions):
            continue
        if max_age_seconds is not None and view.age_seconds > max_age_seconds:
            continue
        if risk is not None and view.risk != risk:
            continue
        views.append(view)
    views.sort(key=lambda view: (view.created_at, -RISK_RANK.get(view.risk, 0)))
    return views
