"""Approval ledger: one Redis record per pending action, from request to decision.

A record is bound to the action's digest (tool, canonical arguments, plan step
and policy version) and moves through one state machine::

    pending -> approved | edited | rejected | responded | expired | cancelled

Every transition is a compare-and-set under ``WATCH``/``MULTI``. Two
reviewers deciding at once, or one reviewer clicking twice, therefore produce
one decision, and the loser gets ``ApprovalConflictError`` naming who decided.
Requests, decisions and outcomes are appended to the thread's hash-chained
audit log (``warden.audit``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import redis
from pydantic import BaseModel, Field

from warden.actions import Decision, PendingAction, PolicyVerdict, action_digest, current_approvals, current_arguments
from warden.audit import AuditLog
from warden.redaction import redact
from warden.errors import (
    ApprovalConflictError,
    ApprovalExpiredError,
    ReviewerNotAllowedError,
)

logger = logging.getLogger(__name__)

ApprovalState = Literal["pending", "approved", "edited", "rejected", "responded", "expired", "cancelled"]
TERMINAL_STATES = frozenset({"approved", "edited", "rejected", "responded", "expired", "cancelled"})
_FINAL_STATE = {"reject": "rejected", "respond": "responded", "expire": "expired", "cancel": "cancelled"}
_MAX_CAS_ATTEMPTS = 50
# Prefix of the audit event ids the ledger appends.
_LEDGER_EVENT = "ledger"
# Creates the record and its index entries together, or nothing when the
# record exists, so a crash cannot leave an unlisted record.
_REQUEST_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
  return 1
end
return 0
"""

DEFAULT_REVIEW_ROLES: Mapping[str, frozenset[str]] = {
    "low": frozenset({"agent", "supervisor"}),
    "medium": frozenset({"agent", "supervisor"}),
    "high": frozenset({"supervisor"}),
}
DEFAULT_DEADLINES: Mapping[str, float] = {"low": 24 * 3600.0, "medium": 8 * 3600.0, "high": 4 * 3600.0}


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class ApprovalRules:
    """Reviewer roles allowed per risk tier, and the deadline of an open request per tier."""

    reviewers: Mapping[str, str] = field(default_factory=dict)
    """Reviewer directory: identity to role. A reviewer missing here may not decide."""
    roles_by_risk: Mapping[str, frozenset[str]] = field(default_factory=lambda: dict(DEFAULT_REVIEW_ROLES))
    """Roles allowed to decide an action of each risk tier."""
    deadline_seconds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_DEADLINES))
    """Seconds a request of each risk tier stays open before it expires."""

    def role_of(self, reviewer: str, action_id: str, claimed: str | None = None) -> str:
        """Return ``reviewer``'s role from the directory.

        Raises ``ReviewerNotAllowedError`` when the reviewer is not in the
        directory or claims a role other than the one recorded there.
        """
        role = self.reviewers.get(reviewer)
        if role is None:
            raise ReviewerNotAllowedError(
                f"reviewer {reviewer!r} is not in the reviewer directory and may not decide "
                f"{action_id!r}; add them to WARDEN_REVIEWERS as name:role"
            )
        if claimed is not None and claimed != role:
            raise ReviewerNotAllowedError(
                f"reviewer {reviewer!r} claims role {claimed!r} but the directory records {role!r}"
            )
        return role

    def check_role(self, role: str, risk: str, action_id: str, reviewer: str) -> None:
        """Raise ``ReviewerNotAllowedError`` unless ``role`` may decide a ``risk`` action."""
        allowed = self.roles_by_risk.get(risk, frozenset())
        if role not in allowed:
            raise ReviewerNotAllowedError(
                f"reviewer {reviewer!r} has role {role!r}, but a {risk}-risk action such as "
                f"{action_id!r} needs one of {sorted(allowed)}"
            )

    def deadline_for(self, risk: str) -> float:
        """Return the seconds a request of ``risk`` stays open; unknown tiers get the shortest."""
        if risk in self.deadline_seconds:
            return float(self.deadline_seconds[risk])
        return float(min(self.deadline_seconds.values()))


class ApprovalRecord(BaseModel):
    """One action waiting for, or closed by, reviewer decisions."""

    action_id: str
    digest: str
    """Digest of the action as proposed."""
    approved_digest: str | None = None
    """Digest of what was approved: the edited arguments for an edit, else ``digest``."""
    tenant: str
    thread_id: str
    round: int
    tool: str
    arguments: dict[str, Any]
    approved_arguments: dict[str, Any] | None = None
    step_index: int
    policy_version: str
    risk: str
    scope: str
    irreversible: bool
    verdict: PolicyVerdict
    requester: str
    customer_id: str | None = None
    state: ApprovalState = "pending"
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None
    decisions: list[Decision] = Field(default_factory=list)
    """Every decision applied, in order. A two-person approval contains two."""
    context: dict[str, Any] = Field(default_factory=dict)
    """Context shown to the reviewer: customer message, plan, rationale, verdict, citations."""

    @property
    def reviewers(self) -> list[str]:
        return [decision.reviewer for decision in self.decisions]

    @property
    def final_decision(self) -> Decision | None:
        return self.decisions[-1] if self.state in TERMINAL_STATES and self.decisions else None


def new_record(
    action: PendingAction,
    *,
    tenant: str,
    thread_id: str,
    round_number: int,
    policy_version: str,
    requester: str,
    customer_id: str | None,
    rules: ApprovalRules,
    context: Mapping[str, Any],
    now: datetime | None = None,
) -> ApprovalRecord:
    """Build the pending record for ``action``, with its deadline from ``rules``."""
    created = now or _now()
    expires = datetime.fromtimestamp(created.timestamp() + rules.deadline_for(action.risk), timezone.utc)
    return ApprovalRecord(
        action_id=action.action_id,
        digest=action.digest,
        tenant=tenant,
        thread_id=thread_id,
        round=round_number,
        tool=action.tool,
        arguments=action.arguments,
        step_index=action.step_index,
        policy_version=policy_version,
        risk=action.risk,
        scope=action.scope,
        irreversible=action.irreversible,
        verdict=action.verdict,
        requester=requester,
        customer_id=customer_id,
        created_at=created,
        expires_at=expires,
        context=dict(context),
    )


def _arguments_diff(before: Mapping[str, Any], after: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return how an edit changed the arguments: ``{name: {"from": old, "to": new}}``, or None for no edit."""
    if after is None:
        return None
    names = sorted(set(before) | set(after))
    return {
        name: {"from": before.get(name), "to": after.get(name)}
        for name in names
        if before.get(name) != after.get(name)
    }


def _same_decision(left: Decision, right: Decision) -> bool:
    return (
        left.reviewer == right.reviewer
        and left.decision == right.decision
        and left.decided_at == right.decided_at
    )


class ApprovalLedger:
    """Approval records of one tenant in Redis.

    Keys: ``warden:{tenant}:approval:{action_id}`` contains the record as JSON,
    and ``warden:{tenant}:approvals:pending`` and ``...:approvals:deadlines``
    are sorted sets of open action ids by creation time and by deadline.
    Events go to ``audit``, which defaults to the tenant's ``AuditLog``.

    An event is appended after the record changes, not in the same
    transaction, because the audit log chains each entry to the thread's
    previous one. A crash between the two is repaired by the next call for the
    same action: it appends every event the record implies, and the audit
    log's event ids skip those already appended.
    """

    def __init__(self, client: redis.Redis, tenant: str = "default", audit: AuditLog | None = None) -> None:
        self.client = client
        self.tenant = tenant
        self.audit = audit if audit is not None else AuditLog(client, tenant)
        self._prefix = f"warden:{tenant}"

    def _key(self, action_id: str) -> str:
        return f"{self._prefix}:approval:{action_id}"

    @property
    def _pending_key(self) -> str:
        return f"{self._prefix}:approvals:pending"

    @property
    def _deadline_key(self) -> str:
        return f"{self._prefix}:approvals:deadlines"

    def request(self, record: ApprovalRecord) -> tuple[ApprovalRecord, bool]:
        """Store ``record`` unless its action id is already recorded.

        Returns the stored record and whether this call created it, so a node
        re-run by LangGraph on resume neither duplicates the record nor its
        ``approval_requested`` audit event. Card numbers, tokens and passwords
        in the record's context are redacted before it is stored.
        """
        record = record.model_copy(update={"context": redact(record.context)})
        created = self.client.eval(
            _REQUEST_SCRIPT,
            3,
            self._key(record.action_id),
            self._pending_key,
            self._deadline_key,
            record.model_dump_json(),
            record.created_at.timestamp(),
            record.expires_at.timestamp(),
            record.action_id,
        )
        if not created:
            stored = self.get(record.action_id)
            if stored is None:
                raise RuntimeError(f"approval record {record.action_id!r} vanished while being created")
            self._append_events(stored)
            return stored, False
        self._append_events(record)
        logger.info(
            "approval requested action_id=%s thread_id=%s tool=%s round=%d",
            record.action_id, record.thread_id, record.tool, record.round,
        )
        return record, True

    def get(self, action_id: str) -> ApprovalRecord | None:
        """Return the record of ``action_id``, or None when there is none."""
        raw = self.client.get(self._key(action_id))
        return ApprovalRecord.model_validate_json(raw) if raw is not None else None

    def decide(
        self,
        decisions: Mapping[str, Decision],
        *,
        now: datetime | None = None,
        check_deadline: bool = True,
    ) -> dict[str, ApprovalRecord]:
        """Apply ``decisions`` (action id to decision) atomically and return the records.

        Either every decision is applied or none is. Re-applying a decision
        that is already recorded (same reviewer, kind and time) changes
        nothing, which makes a graph node that replays its resume value safe.

        Raises:
            ApprovalConflictError: an action is no longer pending, or the
                reviewer already approved it.
            ApprovalExpiredError: an action passed its deadline; it is closed
                as expired before the error is raised.
            KeyError: an action id has no record.
        """
        now = now or _now()
        keys = [self._key(action_id) for action_id in decisions]
        for _attempt in range(_MAX_CAS_ATTEMPTS):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*keys)
                    records = self._load_for_update(pipe, decisions)
                    expired = [r for r in records.values() if r.state == "pending" and r.expires_at <= now]
                    if check_deadline and expired:
                        pipe.unwatch()
                        self.close([r.action_id for r in expired], "expire", reviewer="deadline", now=now)
                        raise ApprovalExpiredError(
                            f"approval of {[r.action_id for r in expired]} expired at "
                            f"{min(r.expires_at for r in expired).isoformat()}; the actions will not run"
                        )
                    changed = {
                        action_id: self._apply(records[action_id], decision, now)
                        for action_id, decision in decisions.items()
                    }
                    pipe.multi()
                    self._write(pipe, changed, records)
                    pipe.execute()
                    final = {action_id: changed[action_id] or records[action_id] for action_id in decisions}
                    for record in final.values():
                        self._append_events(record)
                    return final
                except redis.WatchError:
                    continue
        raise ApprovalConflictError(
            f"could not record decisions for {sorted(decisions)} after {_MAX_CAS_ATTEMPTS} "
            "concurrent updates; try again",
            action_id=next(iter(decisions)), state="pending", reviewers=[],
        )

    def close(
        self, action_ids: Iterable[str], kind: Literal["expire", "cancel"], *, reviewer: str,
        reason: str = "", now: datetime | None = None,
    ) -> list[ApprovalRecord]:
        """Close the still-pending actions among ``action_ids`` as expired or cancelled.

        Actions already decided are left as they are; returns the records
        that this call closed.
        """
        now = now or _now()
        closed = []
        for action_id in action_ids:
            decision = Decision(
                decision=kind, reviewer=reviewer, reason=reason or f"{kind}d by {reviewer}", decided_at=now
            )
            try:
                closed.append(self.decide({action_id: decision}, now=now, check_deadline=False)[action_id])
            except ApprovalConflictError:
                continue
        return closed

    def _load_for_update(self, pipe: Any, decisions: Mapping[str, Decision]) -> dict[str, ApprovalRecord]:
        records = {}
        for action_id in decisions:
            raw = pipe.get(self._key(action_id))
            if raw is None:
                raise KeyError(f"no approval record for action {action_id!r}")
            records[action_id] = ApprovalRecord.model_validate_json(raw)
        return records

    def _apply(self, record: ApprovalRecord, decision: Decision, now: datetime) -> ApprovalRecord | None:
        """Return the record after ``decision``, or None when it is already recorded."""
        if any(_same_decision(entry, decision) for entry in record.decisions):
            return None
        if record.state != "pending":
            who = ", ".join(record.reviewers) or "nobody"
            raise ApprovalConflictError(
                f"action {record.action_id!r} was already decided ({record.state}) by {who}",
                action_id=record.action_id, state=record.state, reviewers=record.reviewers,
            )
        if decision.reviewer in [entry.reviewer for entry in current_approvals(record.decisions)]:
            raise ApprovalConflictError(
                f"reviewer {decision.reviewer!r} already approved {record.action_id!r}; "
                "a second, different reviewer must approve it",
                action_id=record.action_id, state=record.state, reviewers=record.reviewers,
            )
        update: dict[str, Any] = {"decisions": [*record.decisions, decision]}
        if decision.decision in _FINAL_STATE:
            update |= {"state": _FINAL_STATE[decision.decision], "decided_at": now}
        else:
            arguments = current_arguments(record.arguments, update["decisions"])
            update["approved_arguments"] = arguments
            update["approved_digest"] = action_digest(
                record.tool, arguments, record.step_index, record.policy_version
            )
            # Only approvals of the current arguments count; an edit starts the count again.
            approvals = len(current_approvals(update["decisions"]))
            if approvals >= max(record.verdict.approvals_required, 1):
                edited = any(entry.decision == "edit" for entry in update["decisions"])
                update |= {"state": "edited" if edited else "approved", "decided_at": now}
        return record.model_copy(update=update)

    def _write(self, pipe: Any, changed: Mapping[str, ApprovalRecord | None], before: Mapping[str, ApprovalRecord]) -> None:
        for action_id, record in changed.items():
            if record is None:
                continue
            pipe.set(self._key(action_id), record.model_dump_json())
            if record.state in TERMINAL_STATES:
                pipe.zrem(self._pending_key, action_id)
                pipe.zrem(self._deadline_key, action_id)
                logger.info(
                    "approval closed action_id=%s thread_id=%s state=%s reviewers=%s",
                    action_id, record.thread_id, record.state, ",".join(record.reviewers),
                )

    def _append_events(self, record: ApprovalRecord) -> None:
        """Append the request and every decision of ``record`` that the audit log lacks."""
        summary = {"action_id": record.action_id, "round": record.round, "tool": record.tool}
        self.audit.append(
            record.thread_id, "approval_requested",
            {**summary, "state": "pending", "reviewers": [], "record": record.model_dump(
                mode="json", exclude={"state", "decisions", "decided_at", "approved_arguments", "approved_digest"},
            )},
            event_id=f"{_LEDGER_EVENT}/{record.action_id}/requested",
            round=record.round, customer_id=record.customer_id,
        )
        for number, decision in enumerate(record.decisions, start=1):
            last = number == len(record.decisions)
            data = {
                **summary,
                "state": record.state if last else "pending",
                "reviewers": record.reviewers[:number],
                "decision": decision.decision,
                "reviewer": decision.reviewer,
                "role": decision.role,
                "decided_at": decision.decided_at.isoformat(),
                "reason": decision.reason,
                "message": decision.message,
                "arguments": decision.arguments,
                "arguments_diff": _arguments_diff(record.arguments, decision.arguments),
            }
            self.audit.append(
                record.thread_id, f"decision_{decision.decision}", data,
                event_id=f"{_LEDGER_EVENT}/{record.action_id}/decision/{number}", round=record.round,
            )

    def record_event(self, thread_id: str, kind: str, **fields: Any) -> None:
        """Append an audit event (for example an execution outcome) to the thread's audit log.

        The event id is ``kind`` and ``fields["action_id"]``, so recording the
        same outcome of the same action twice appends it once.
        """
        self.audit.append(
            thread_id, kind, json.loads(json.dumps(fields, default=str)),
            event_id=f"{_LEDGER_EVENT}/{fields.get('action_id', '')}/{kind}",
        )

    def events(self, thread_id: str) -> list[dict[str, Any]]:
        """Return the thread's ledger events from the audit log, oldest first.

        Each is ``{"event": kind, "at": time, **data}``; an event whose data was
        erased keeps only ``event`` and ``at``.
        """
        return [
            {"event": item.entry["kind"], "at": item.entry["at"], **(item.data or {})}
            for item in self.audit.read(thread_id)
            if item.entry["event_id"].startswith(_LEDGER_EVENT + "/")
        ]

    def list_pending(
        self,
        *,
        role: str | None = None,
        rules: ApprovalRules | None = None,
        min_age_seconds: float = 0.0,
        thread_id: str | None = None,
        now: datetime | None = None,
    ) -> list[ApprovalRecord]:
        """Return this tenant's pending records, oldest first.

        ``role`` keeps only what that role may decide under ``rules``;
        ``min_age_seconds`` keeps records at least that old.
        """
        now = now or _now()
        newest = now.timestamp() - min_age_seconds
        ids = [raw.decode() for raw in self.client.zrangebyscore(self._pending_key, "-inf", newest)]
        records = [record for record in map(self.get, ids) if record is not None and record.state == "pending"]
        if thread_id is not None:
            records = [record for record in records if record.thread_id == thread_id]
        if role is not None:
            allowed = (rules or ApprovalRules()).roles_by_risk
            records = [record for record in records if role in allowed.get(record.risk, frozenset())]
        return records

    def due(self, now: datetime | None = None) -> list[ApprovalRecord]:
        """Return the pending records whose deadline has passed, oldest deadline first."""
        moment = (now or _now()).timestamp()
        ids = [raw.decode() for raw in self.client.zrangebyscore(self._deadline_key, "-inf", moment)]
        return [record for record in map(self.get, ids) if record is not None and record.state == "pending"]
