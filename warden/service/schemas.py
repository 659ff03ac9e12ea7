"""Request and response bodies of the HTTP service, published in its OpenAPI schema."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from warden.settings import MAX_CUSTOMER_MESSAGE_CHARS

ThreadId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
ActionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")]
CustomerText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_CUSTOMER_MESSAGE_CHARS)
]
ReviewerText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
RiskTier = Literal["low", "medium", "high"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ThreadCreate(_Request):
    """A new conversation; the service picks the id when none is given."""

    thread_id: ThreadId | None = None


class ThreadCreated(BaseModel):
    thread_id: str
    created_at: datetime


class MessageIn(_Request):
    """A customer message."""

    text: CustomerText


class DecisionIn(_Request):
    """A reviewer's decision on one action; the reviewer is the caller's token subject."""

    decision: Literal["approve", "edit", "reject", "respond"]
    reason: ReviewerText | None = Field(default=None, description="Required for 'reject'")
    arguments: dict[str, Any] | None = Field(default=None, description="New arguments, required for 'edit'")
    message: ReviewerText | None = Field(default=None, description="Text for the agent, required for 'respond'")


class DecisionsIn(_Request):
    """Decisions keyed by action id; every action still waiting on the thread needs one."""

    decisions: dict[ActionId, DecisionIn] = Field(min_length=1, max_length=50)


class ToolCallOut(BaseModel):
    id: str | None
    name: str
    args: dict[str, Any]


class MessageOut(BaseModel):
    """One message of the conversation as stored in the checkpoint."""

    type: str
    """``human``, ``ai`` or ``tool``."""
    content: str
    tool_calls: list[ToolCallOut] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


class ActionResultOut(BaseModel):
    action_id: str
    tool: str
    arguments: dict[str, Any]
    status: str
    reviewer: str | None = None
    output: Any = None
    error: str | None = None


class VerdictOut(BaseModel):
    verdict: str
    rule: str
    reason: str
    approvals_required: int


class ApprovalActionOut(BaseModel):
    """One action of a pending approval, with what the caller may do about it."""

    action_id: str
    tool: str
    arguments: dict[str, Any]
    """The arguments the action runs with if approved: a reviewer's edit, else the proposed ones."""
    proposed_arguments: dict[str, Any]
    """The arguments the agent proposed."""
    edited_by: str | None = None
    """The reviewer whose edit set ``arguments``; approvals before that edit no longer count."""
    risk: str
    scope: str
    irreversible: bool
    rationale: str
    citations: list[str]
    verdict: VerdictOut
    approved_by: list[str]
    waiting: bool
    """Whether the action still needs a decision in this round."""
    can_decide: bool
    """Whether the caller's role may decide an action of this risk tier."""
    editable: bool
    """Whether the caller may approve it with edited arguments; the server validates them again."""


class CitedPassage(BaseModel):
    title: str
    source: str
    text: str


class PlanStepOut(BaseModel):
    tool: str
    arguments: dict[str, Any]
    why: str
    citations: list[str]


class ApprovalOut(BaseModel):
    """A thread paused for reviewer decisions, with the context a reviewer needs."""

    thread_id: str
    tenant: str
    round: int
    customer: str | None
    message: str
    """The customer message that led to the plan."""
    created_at: datetime
    expires_at: datetime
    age_seconds: float
    expired: bool
    risk: str
    """The highest risk tier among the waiting actions."""
    policy_version: str
    error: str | None = None
    """Error of the last rejected resume value, if there was one."""
    plan: list[PlanStepOut]
    actions: list[ApprovalActionOut]
    citations: dict[str, CitedPassage]


class ThreadStateOut(BaseModel):
    thread_id: str
    status: Literal["new", "idle", "awaiting_approval"]
    answer: str
    messages: list[MessageOut]
    approval: ApprovalOut | None = None
    results: list[ActionResultOut]


class CheckpointOut(BaseModel):
    checkpoint_id: str
    step: int | None
    source: str | None
    next: list[str]
    created_at: str | None
    messages: int
    interrupts: list[Any]


class HistoryOut(BaseModel):
    thread_id: str
    checkpoints: list[CheckpointOut]
    audit: list[dict[str, Any]]
    """Approval ledger events of the thread, oldest first; empty without a ledger."""


class TurnOut(BaseModel):
    """Outcome of a turn or a decision, for callers that do not read the event stream."""

    thread_id: str
    status: Literal["answered", "awaiting_approval"]
    answer: str
    results: list[ActionResultOut]
    approval: ApprovalOut | None = None


class PrincipalOut(BaseModel):
    subject: str
    role: str
    tenant: str


class ErrorOut(BaseModel):
    detail: str
