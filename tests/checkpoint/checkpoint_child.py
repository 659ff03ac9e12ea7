"""Second-process side of the checkpoint tests: pause, crash or resume one thread.

Usage: python checkpoint_child.py MODE ARGS...; prints one JSON line on success.
"""

from __future__ import annotations

import importlib
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypedDict

import redis
from checkpoint_support import (
    build_fan_graph,
    build_support_graph,
    sample_plan,
)
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from warden.checkpoint import RedisSaver
from warden.checkpoint_serde import CheckpointSerializer
from warden.errors import CheckpointDecodeError


def _config(thread_id: str) -> dict:
    return {"configurable": {"thread_id": thread_id}}


def _plan_report(plan: Any) -> dict:
    return {
        "class": f"{type(plan).__module__}.{type(plan).__qualname__}",
        "equal": plan == sample_plan(),
        "utcoffset": plan.created_at.utcoffset().total_seconds(),
        "first_tool": plan.steps[0].tool,
    }


def _open_saver(url: str, serde: Any = None) -> RedisSaver:
    return RedisSaver(redis.Redis.from_url(url), serde=serde)


def _open_sqlite(path: str):
    import sqlite3  # noqa: PLC0415

    from langgraph.checkpoint.sqlite import SqliteSaver  # noqa: PLC0415

    return SqliteSaver(sqlite3.connect(path, check_same_thread=False))


def typed_plan_pause(store: str, location: str, thread_id: str) -> dict:
    saver = _open_saver(location) if store == "redis" else _open_sqlite(location)
    graph = build_support_graph(saver)
    result = graph.invoke({"trace": []}, _config(thread_id))
    return {"interrupts": [item.value for item in result["__interrupt__"]]}


def typed_plan_resume(store: str, location: str, thread_id: str) -> dict:
    saver = _open_saver(location) if store == "redis" else _open_sqlite(location)
    graph = build_support_graph(saver)
    restored = graph.get_state(_config(thread_id)).values["plan"]
    result = graph.invoke(Command(resume="approved"), _config(thread_id))
    return {
        "restored": _plan_report(restored),
        "decision": result["decision"],
        "receipt_offset": result["receipt"].issued_at.utcoffset().total_seconds(),
        "trace": result["trace"],
    }


class LooseState(TypedDict, total=False):
    plan: Any
    decision: str


def _build_moved_class_graph(saver: Any, plan_class: type | None):
    def plan_actions(state: LooseState) -> dict:
        steps = [{"tool": "refund_order", "arguments": {"order_id": "#W7"}}]
        created_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))
        return {"plan": plan_class(steps=steps, created_at=created_at)}

    def request_approval(state: LooseState) -> dict:
        answer = interrupt("approve?")
        return {"decision": f"{answer}:{state['plan'].steps[0].tool}"}

    builder = StateGraph(LooseState)
    builder.add_node("plan_actions", plan_actions)
    builder.add_node("request_approval", request_approval)
    builder.add_edge(START, "plan_actions")
    builder.add_edge("plan_actions", "request_approval")
    builder.add_edge("request_approval", END)
    return builder.compile(checkpointer=saver)


def moved_class_write(url: str, thread_id: str, class_path: str) -> dict:
    module, _, name = class_path.rpartition(".")
    plan_class = getattr(importlib.import_module(module), name)
    graph = _build_moved_class_graph(_open_saver(url), plan_class)
    graph.invoke({}, _config(thread_id))
    return {"stored": class_path}


def moved_class_read(url: str, thread_id: str, aliases_json: str) -> dict:
    aliases = json.loads(aliases_json)
    saver = _open_saver(url, CheckpointSerializer(aliases=aliases))
    graph = _build_moved_class_graph(saver, None)
    try:
        plan = graph.get_state(_config(thread_id)).values["plan"]
    except CheckpointDecodeError as exc:
        return {
            "error": str(exc),
            "key": exc.key,
            "channel": exc.channel,
            "type_name": exc.type_name,
        }
    result = graph.invoke(Command(resume="approved"), _config(thread_id))
    return {
        "class": f"{type(plan).__module__}.{type(plan).__qualname__}",
        "dump": plan.model_dump(mode="json"),
        "utcoffset": plan.created_at.utcoffset().total_seconds(),
        "decision": result["decision"],
    }


def fan_run(url: str, thread_id: str, marker: str, durability: str, crash: str) -> dict:
    graph = build_fan_graph(
        _open_saver(url), marker=Path(marker), crash=crash == "crash"
    )
    result = graph.invoke({"trace": []}, _config(thread_id), durability=durability)
    return {"trace": result["trace"]}


def fan_resume(url: str, thread_id: str, marker: str, durability: str) -> dict:
    graph = build_fan_graph(_open_saver(url), marker=Path(marker))
    before = graph.get_state(_config(thread_id))
    if not before.next:
        return {"next_before": [], "trace": None}
    result = graph.invoke(None, _config(thread_id), durability=durability)
    return {
        "next_before": list(before.next),
        "trace": (result or {}).get("trace"),
    }


MODES = {
    "typed-plan-pause": typed_plan_pause,
    "typed-plan-resume": typed_plan_resume,
    "moved-class-write": moved_class_write,
    "moved-class-read": moved_class_read,
    "fan-run": fan_run,
    "fan-resume": fan_resume,
}


if __name__ == "__main__":
    mode, *arguments = sys.argv[1:]
    print(json.dumps(MODES[mode](*arguments)))
