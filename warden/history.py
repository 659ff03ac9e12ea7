"""Conversation history for prompts: trimmed to a token budget without breaking tool pairs.

A chat API rejects a tool result whose call was trimmed away, and a call whose
results are missing. So trimming works on whole units (a message, or an
assistant tool call together with all its results), and the kept history
starts at a customer message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.utils import count_tokens_approximately

TokenCounter = Callable[[Sequence[BaseMessage]], int]


def _units(messages: Sequence[BaseMessage]) -> list[list[BaseMessage]]:
    units: list[list[BaseMessage]] = []
    open_calls: set[str] = set()
    for message in messages:
        if isinstance(message, ToolMessage) and message.tool_call_id in open_calls and units:
            units[-1].append(message)
            open_calls.discard(message.tool_call_id)
            continue
        units.append([message])
        open_calls = {call["id"] for call in message.tool_calls} if isinstance(message, AIMessage) else set()
    return units


def trim_history(
    messages: Sequence[BaseMessage],
    max_tokens: int,
    token_counter: TokenCounter = count_tokens_approximately,
) -> list[BaseMessage]:
    """Return the newest messages that fit in ``max_tokens``.

    A leading system message is always kept. Tool calls and their results are
    kept or dropped together, and the first kept message after the system
    message is a customer (human) message. Raises ``ValueError`` when
    ``max_tokens`` cannot hold even the system message.
    """
    system = [messages[0]] if messages and isinstance(messages[0], SystemMessage) else []
    budget = max_tokens - (token_counter(system) if system else 0)
    if budget < 0:
        raise ValueError(f"max_tokens={max_tokens} is smaller than the system message alone")

    kept: list[list[BaseMessage]] = []
    used = 0
    for unit in reversed(_units(messages[len(system):])):
        cost = token_counter(unit)
        if used + cost > budget:
            break
        kept.append(unit)
        used += cost
    kept.reverse()
    while kept and not isinstance(kept[0][0], HumanMessage):
        kept.pop(0)
    return system + [message for unit in kept for message in unit]


def check_tool_pairs(messages: Sequence[BaseMessage]) -> None:
    """Raise ``ValueError`` if a tool result lacks its call or a call lacks a result."""
    open_calls: set[str] = set()
    for message in messages:
        if isinstance(message, ToolMessage):
            if message.tool_call_id not in open_calls:
                raise ValueError(f"tool result {message.tool_call_id!r} has no preceding call")
            open_calls.discard(message.tool_call_id)
            continue
        if open_calls:
            raise ValueError(f"tool call(s) {sorted(open_calls)} have no result")
        if isinstance(message, AIMessage):
            open_calls = {call["id"] for call in message.tool_calls}
    if open_calls:
        raise ValueError(f"tool call(s) {sorted(open_calls)} have no result")


def render_history(messages: Sequence[BaseMessage], max_tokens: int = 400) -> str:
    """Render earlier turns as plain lines for a prompt, trimmed to ``max_tokens``."""
    lines = []
    for message in trim_history(messages, max_tokens):
        if isinstance(message, HumanMessage):
            lines.append(f"customer: {message.content}")
        elif isinstance(message, AIMessage) and message.tool_calls:
            for call in message.tool_calls:
                lines.append(f"agent called {call['name']} {json.dumps(call['args'], separators=(',', ':'))}")
        elif isinstance(message, AIMessage) and message.content:
            lines.append(f"agent: {message.content}")
        elif isinstance(message, ToolMessage):
            text = str(message.content)
            lines.append(f"result: {text[:200]}{'…' if len(text) > 200 else ''}")
    return "\n".join(lines) or "none"
