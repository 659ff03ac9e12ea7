"""Typed records that flow through the governed pipeline: intent, plan, decisions, results.

They are Pydantic models so the checkpoint saver stores them typed, the model's
structured output is validated against them, and the HTTP service publishes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

IntentLabel = Literal[
    "cancel_order",
    "modify_order_items",
    "modify_order_address",
    "modify_order_payment",
    "return_items",
    "exchange_items",
    "change_default_address",
    "order_question",
    "product_question",
    "talk_to_human",
    "out_of_scope",
]
INTENT_LABELS: tuple[str, ...] = IntentLabel.__args__


def _now() -> datetime:
    return datetime.now(timezone.utc)


def canonical_json(value: Any) -> str:
    """Serialise ``value`` with sorted keys and no spaces, for digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class Entities(BaseModel):
    """Identifiers the customer mentioned; every one is checked against the database."""

    order_ids: list[str] = Field(default_factory=list, description="Order ids like #W2378156")
    emails: list[str] = Field(default_factory=list)
    first_name: str | None = None
    last_name: str | None = None
    zip: str | None = Field(default=None, description="Five-digit zip code")
    item_ids: list[str] = Field(default_factory=list, description="Ten-digit item ids")


class IntentOutput(BaseModel):
    """Structured output of the model when it classifies a message."""

    intent: IntentLabel
    entities: Entities = Field(default_factory=Entities)


class Intent(BaseModel):
    """The classified customer message, with how the label was chosen."""

    label: IntentLabel
    confidence: float | None = None
    path: Literal["classifier", "model"] = "model"
    entities: Entities = Field(default_factory=Entities)


class Citation(BaseModel):
    """A retrieved knowledge-base chunk, as shown to the model and the reviewer."""

    chunk_id: str
    source: str
    title: str = ""
    heading: str = ""
    text: str
    score: float


class PlanStep(BaseModel):
    """One proposed tool call."""

    model_config = ConfigDict(extra="forbid")

    tool: str = Field(description="Exact tool name")
    arguments: dict[str, Any] = Field(default_factory=dict)
    why: str = Field(default="", description="One sentence: why this step is needed")
    citations: list[str] = Field(
        default_factory=list, description="Chunk ids of the articles that support it"
    )


class PlanOutput(BaseModel):
    """Structured output of the model when it plans: tool calls, or none and a question."""

    steps: list[PlanStep] = Field(default_factory=list)
    question: str = Field(
        default="",
        description="What to ask the customer when information is missing",
    )


class Plan(BaseModel):
    """A validated plan, kept in state and in the audit trail."""

    steps: list[PlanStep] = Field(default_factory=list)
    question: str = ""
    revision: int = 1
    created_at: datetime = Field(default_factory=_now)
    errors: list[str] = Field(default_factory=list)


Verdict = Literal["allow", "needs_approval", "deny"]


class PolicyVerdict(BaseModel):
    """The policy engine's decision on one step, with the rule that decided."""

    verdict: Verdict
    rule: str
    reason: str
    approvals_required: int = 0


class PendingAction(BaseModel):
    """A write waiting for a reviewer; ``action_id`` is stable across re-runs."""

    action_id: str
    tool: str
    arguments: dict[str, Any]
    step_index: int
    risk: str
    scope: str
    irreversible: bool
    rationale: str
    citations: list[str] = Field(default_factory=list)
    verdict: PolicyVerdict
    digest: str


DecisionKind = Literal["approve", "edit", "reject", "respond", "expire", "cancel"]
"""``expire`` and ``cancel`` are set by the runtime, never by a reviewer."""
REVIEWER_DECISIONS: tuple[str, ...] = ("approve", "edit", "reject", "respond")


class Decision(BaseModel):
    """A reviewer's decision on one pending action."""

    model_config = ConfigDict(extra="forbid")

    decision: DecisionKind
    arguments: dict[str, Any] | None = Field(
        default=None, description="New arguments, required for 'edit'"
    )
    reason: str | None = Field(default=None, description="Required for 'reject'")
    message: str | None = Field(
        default=None, description="Text returned to the model, required for 'respond'"
    )
    reviewer: str = Field(default="reviewer", description="Who decided")
    role: str | None = Field(
        default=None, description="The reviewer's role, filled in from the reviewer directory"
    )
    decided_at: datetime = Field(default_factory=_now)


def current_approvals(decisions: Sequence[Decision]) -> list[Decision]:
    """Return the approving decisions that apply to an action's current arguments.

    An edit replaces the arguments, so approvals given before the last edit no
    longer count, and the edit itself is its reviewer's approval of the new
    arguments.
    """
    start = max((i for i, entry in enumerate(decisions) if entry.decision == "edit"), default=0)
    return [entry for entry in decisions[start:] if entry.decision in ("approve", "edit")]


def current_arguments(arguments: dict[str, Any], decisions: Sequence[Decision]) -> dict[str, Any]:
    """Return the arguments an action runs with: the last edit's, else the proposed ones."""
    edits = [entry for entry in decisions if entry.decision == "edit"]
    return dict(edits[-1].arguments) if edits and edits[-1].arguments is not None else arguments


class ActionResult(BaseModel):
    """Outcome of one step, with the tool's output or error."""

    action_id: str
    tool: str
    arguments: dict[str, Any]
    status: Literal[
        "done", "failed", "rejected", "responded", "denied", "unknown", "expired", "cancelled"
    ]
    output: Any = None
    error: str | None = None
    reviewer: str | None = None
    idempotency_key: str | None = None


def action_digest(tool: str, arguments: dict[str, Any], step_index: int, policy_version: str) -> str:
    """Return the SHA-256 that binds an approval to exactly what was approved."""
    payload = canonical_json(
        {"tool": tool, "arguments": arguments, "step": step_index, "policy": policy_version}
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def action_id_for(
    thread_id: str,
    turn: int,
    step_index: int,
    tool: str,
    arguments: dict[str, Any],
    approval_round: int = 0,
) -> str:
    """Return a stable action id: the same proposal in the same approval round gets the same id.

    ``approval_round`` counts the rounds already decided on this turn, so a
    proposal repeated after a reviewer asked for changes gets a new id and a
    new ledger record.
    """
    fields: dict[str, Any] = {
        "thread": thread_id, "turn": turn, "step": step_index, "tool": tool, "arguments": arguments
    }
    if approval_round:
        fields["round"] = approval_round
    payload = canonical_json(fields)
    return "act_" + hashlib.sha256(payload.encode()).hexdigest()[:16]
