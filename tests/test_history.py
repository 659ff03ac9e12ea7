"""Trimming the conversation keeps tool calls with their results (case V2)."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.utils import count_tokens_approximately

from warden.history import check_tool_pairs, render_history, trim_history
from warden.models import ScriptedChatModel


def _conversation() -> list:
    return [
        SystemMessage("You are a retail support agent."),
        HumanMessage("Where is my order #W1111111?"),
        AIMessage("", tool_calls=[{"name": "get_order_details", "args": {"order_id": "#W1111111"}, "id": "c1"}]),
        ToolMessage('{"status": "delivered"}', tool_call_id="c1"),
        HumanMessage("And cancel #W2222222 and #W3333333."),
        AIMessage("", tool_calls=[
            {"name": "cancel_pending_order", "args": {"order_id": "#W2222222", "reason": "no longer needed"}, "id": "c2"},
            {"name": "cancel_pending_order", "args": {"order_id": "#W3333333", "reason": "no longer needed"}, "id": "c3"},
        ]),
        ToolMessage('{"status": "done"}', tool_call_id="c2"),
        ToolMessage('{"status": "done"}', tool_call_id="c3"),
        AIMessage("Both orders are cancelled."),
        HumanMessage("Thanks! What is your return window?"),
    ]


def _budgets(messages) -> list[int]:
    total = count_tokens_approximately(messages)
    return list(range(count_tokens_approximately(messages[:1]), total + 2))


def test_trim_keeps_tool_calls_with_results_at_every_budget():
    messages = _conversation()
    for budget in _budgets(messages):
        kept = trim_history(messages, budget)
        check_tool_pairs(kept)
        assert count_tokens_approximately(kept) <= budget
        assert isinstance(kept[0], SystemMessage)
        if len(kept) > 1:
            assert isinstance(kept[1], HumanMessage)


def test_trim_budget_cutting_after_a_tool_call():
    messages = _conversation()
    # The budget that would keep the second tool call but not its results.
    tail = messages[5:]
    budget = count_tokens_approximately(messages[:1]) + count_tokens_approximately(tail) - 1
    kept = trim_history(messages, budget)
    check_tool_pairs(kept)
    assert not any(isinstance(m, ToolMessage) for m in kept)
    assert not any(isinstance(m, AIMessage) and m.tool_calls for m in kept)
    assert isinstance(kept[1], HumanMessage)
    assert kept[-1].content == "Thanks! What is your return window?"
    reply = ScriptedChatModel(script={"text": ["Thirty days."]}).invoke(kept)
    assert reply.content == "Thirty days."


def test_trim_too_small_for_system_message():
    with pytest.raises(ValueError, match="smaller than the system message"):
        trim_history(_conversation(), 1)


def test_check_tool_pairs_detects_orphans():
    messages = _conversation()
    with pytest.raises(ValueError, match="no preceding call"):
        check_tool_pairs([messages[0], messages[3]])
    with pytest.raises(ValueError, match="have no result"):
        check_tool_pairs(messages[:3])


def test_render_history_lists_turns():
    text = render_history(_conversation()[1:-1], max_tokens=1000)
    assert text.splitlines()[0] == "customer: Where is my order #W1111111?"
    assert "agent called cancel_pending_order" in text
    assert text.splitlines()[-1] == "agent: Both orders are cancelled."
