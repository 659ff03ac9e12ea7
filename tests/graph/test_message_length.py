"""The customer message length limit of ``Warden.send``, shared with the HTTP API and the CLI."""

from __future__ import annotations

import pytest

from warden.settings import MAX_CUSTOMER_MESSAGE_CHARS

ANSWER_SCRIPT = {
    "IntentOutput": [{"intent": "order_question", "entities": {}}],
    "PlanOutput": [{"steps": []}],
    "text": ["Your order ships soon."],
}


def _message(length: int) -> str:
    return ("Where is my order? " * length)[:length]


def test_send_rejects_over_long_message(open_warden):
    warden = open_warden(ANSWER_SCRIPT)
    length = MAX_CUSTOMER_MESSAGE_CHARS + 1
    with pytest.raises(ValueError) as raised:
        warden.send("t-long", _message(length))
    assert f"has {length} characters" in str(raised.value)
    assert f"limit of {MAX_CUSTOMER_MESSAGE_CHARS}" in str(raised.value)
    assert "shorten it" in str(raised.value)
    assert warden.graph.get_state({"configurable": {"thread_id": "t-long"}}).values == {}


def test_send_accepts_message_at_limit(open_warden):
    warden = open_warden(ANSWER_SCRIPT)
    outcome = warden.send("t-max", _message(MAX_CUSTOMER_MESSAGE_CHARS))
    assert outcome.status == "answered"
    assert outcome.answer == "Your order ships soon."
