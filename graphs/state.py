"""State of the support graph: one conversation thread, checkpointed after every node."""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from warden.actions import (
    ActionResult,
    Citation,
    Decision,
    Intent,
    PendingAction,
    Plan,
)


class Customer(TypedDict):
    """The customer authenticated in this conversation."""

    user_id: str
    method: str
    """``email`` or ``name_zip``: which lookup found them."""


class SupportState(TypedDict, total=False):
    """Everything one thread remembers.

    Only ``messages`` accumulates across turns; every other key describes the
    current turn and is replaced when the next customer message arrives, except
    ``customer``, which stays authenticated for the whole conversation.
    """

    messages: Annotated[list[AnyMessage], add_messages]
    turn: int
    intent: Intent | None
    retrieved: list[Citation]
    plan: Plan | None
    plan_rounds: int
    lookups: list[ActionResult]
    customer: Customer | None
    pending: list[PendingAction]
    denied: list[ActionResult]
    decisions: dict[str, Decision]
    results: list[ActionResult]
    """Outcomes of the current approval round."""
    settled: list[ActionResult]
    """Outcomes of the turn's earlier approval rounds, except those a reviewer answered with a message."""
    answer: str
    approval_round: int
    notes: list[str]
    """Reviewer messages (``respond`` decisions) handed to the model."""


def turn_reset() -> dict[str, Any]:
    """Return the per-turn keys cleared, for the first node of a new turn."""
    return {
        "intent": None,
        "retrieved": [],
        "plan": None,
        "plan_rounds": 0,
        "lookups": [],
        "pending": [],
        "denied": [],
        "decisions": {},
        "results": [],
        "settled": [],
        "answer": "",
        "approval_round": 0,
        "notes": [],
    }
