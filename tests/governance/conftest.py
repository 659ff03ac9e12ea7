"""Fixtures for the governance tests: the graph fixtures plus scripts with several writes."""

from __future__ import annotations

import json

from tests.graph.conftest import (  # noqa: F401 - fixtures are used by name
    EMMA,
    EMMA_ORDER,
    open_warden,
    settings,
    store,
    template_db,
)

EMMA_ID = "emma_smith_8564"
EMMA_SECOND_PENDING = "#W3614011"
EMMA_DELIVERED = "#W5605613"
EMMA_GIFT_CARD = "gift_card_8541487"
HELLO = "Hi, this is Emma Smith, zip code 10192."
NEW_ADDRESS = {
    "address1": "1 Test Road",
    "address2": "Unit 2",
    "city": "Boston",
    "state": "MA",
    "country": "USA",
    "zip": "02110",
}
AUTHENTICATE = {"tool": "find_user_id_by_name_zip", "arguments": EMMA, "why": "authenticate"}


def plan(*steps: dict) -> dict:
    """Return a scripted ``PlanOutput`` that authenticates Emma and then takes ``steps``."""
    return {"steps": [AUTHENTICATE, *steps]}


def step(tool: str, why: str = "the customer asked", **arguments) -> dict:
    return {"tool": tool, "arguments": arguments, "why": why}


def script(*plans: dict, answer: str = "Done.", intent: str = "cancel_order") -> dict:
    return {
        "IntentOutput": [{"intent": intent, "entities": {"first_name": "Emma", "last_name": "Smith"}}],
        "PlanOutput": list(plans),
        "text": [answer],
    }


def refunds(store, order_id: str = EMMA_ORDER) -> list[dict]:
    order = store.call("get_order_details", {"order_id": order_id})
    return [p for p in order["payment_history"] if p["transaction_type"] == "refund"]


def tool_bodies(warden, thread_id: str) -> dict[str, list[dict]]:
    """Return the JSON bodies of the thread's tool results, grouped by tool call id."""
    bodies: dict[str, list[dict]] = {}
    for message in warden.messages(thread_id):
        if message.type == "tool":
            bodies.setdefault(message.tool_call_id, []).append(json.loads(message.content))
    return bodies


def assert_one_result_per_call(warden, thread_id: str) -> None:
    messages = warden.messages(thread_id)
    call_ids = [call["id"] for m in messages if m.type == "ai" for call in m.tool_calls]
    result_ids = [m.tool_call_id for m in messages if m.type == "tool"]
    assert len(call_ids) == len(set(call_ids)), f"repeated tool calls: {call_ids}"
    assert sorted(call_ids) == sorted(result_ids)
