"""What the Redis saver must keep exactly: messages, typed plans, moved classes,
history order and retention."""

from __future__ import annotations

import asyncio
import json
import operator
import textwrap
import time
from pathlib import Path
from typing import Annotated, TypedDict

import pytest
import redis
from checkpoint_support import (
    build_message_graph,
    build_support_graph,
    run_child_json,
    sample_plan,
)
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from warden.checkpoint import RedisSaver

# -- messages -----------------------------------------------------------------------


def _run_two_turns(checkpointer, thread_id: str) -> None:
    graph = build_message_graph(checkpointer)
    config = {"configurable": {"thread_id": thread_id}}
    graph.invoke(
        {"messages": [HumanMessage(id="human-1", content="Where is #W1?")]}, config
    )
    graph.invoke(
        {"messages": [HumanMessage(id="human-2", content="Please cancel it")]}, config
    )


def test_messages_survive_redis(saver: RedisSaver, redis_url: str) -> None:
    memory = InMemorySaver()
    _run_two_turns(memory, "k1")
    _run_two_turns(saver, "k1")
    config = {"configurable": {"thread_id": "k1"}}
    expected = build_message_graph(memory).get_state(config)

    # A new client and saver, so every value comes back from Redis.
    client = redis.Redis.from_url(redis_url)
    restored = build_message_graph(RedisSaver(client)).get_state(config)
    client.close()

    messages = restored.values["messages"]
    expected_messages = expected.values["messages"]
    assert [type(m) for m in messages] == [
        HumanMessage,
        AIMessage,
        ToolMessage,
        AIMessage,
        HumanMessage,
        AIMessage,
    ]
    assert [type(m) for m in messages] == [type(m) for m in expected_messages]
    assert [m.id for m in messages] == [m.id for m in expected_messages]
    assert [m.content for m in messages] == [m.content for m in expected_messages]
    assert messages[1].tool_calls == expected_messages[1].tool_calls
    assert messages[1].usage_metadata == expected_messages[1].usage_metadata
    assert messages[2].tool_call_id == "call-1"
    assert messages[2].artifact == {"rows": 1}
    assert messages[5].tool_calls == expected_messages[5].tool_calls
    assert messages == expected_messages
    assert restored.next == ("request_approval",)
    assert restored.interrupts[0].value == expected.interrupts[0].value


# -- typed plan ---------------------------------------------------------------------


@pytest.mark.parametrize("store", ["redis", "sqlite"])
def test_typed_plan_new_process(store: str, redis_url: str, tmp_path: Path) -> None:
    location = redis_url if store == "redis" else str(tmp_path / "checkpoints.sqlite")
    paused = run_child_json("typed-plan-pause", store, location, "k2")
    assert paused["interrupts"] == [{"tool": "cancel_pending_order"}]

    resumed = run_child_json("typed-plan-resume", store, location, "k2")
    assert resumed["restored"] == {
        "class": "checkpoint_support.Plan",
        "equal": True,
        "utcoffset": 7200.0,
        "first_tool": "cancel_pending_order",
    }
    assert resumed["decision"] == "approved:cancel_pending_order"
    assert resumed["receipt_offset"] == 7200.0
    assert resumed["trace"][-1] == "respond"


def test_typed_plan_in_memory() -> None:
    graph = build_support_graph(InMemorySaver())
    config = {"configurable": {"thread_id": "k2"}}
    graph.invoke({"trace": []}, config)
    plan = graph.get_state(config).values["plan"]
    assert plan == sample_plan()
    assert plan.created_at.utcoffset() == sample_plan().created_at.utcoffset()


# -- moved class --------------------------------------------------------------------

_PLAN_SOURCE = textwrap.dedent(
    """
    from datetime import datetime
    from typing import Any

    from pydantic import BaseModel


    class Step(BaseModel):
        tool: str
        arguments: dict[str, Any]


    class Plan(BaseModel):
        steps: list[Step]
        created_at: datetime
    """
)


def _write_release(root: Path, package: str, module: str) -> Path:
    package_dir = root / package
    package_dir.mkdir(parents=True)
    (package_dir / "__init__.py").write_text("")
    (package_dir / f"{module}.py").write_text(_PLAN_SOURCE)
    return root


@pytest.fixture
def releases(tmp_path: Path) -> tuple[Path, Path]:
    """Release one defines release_one.models.Plan; release two moved it."""
    first = _write_release(tmp_path / "one", "release_one", "models")
    second = _write_release(tmp_path / "two", "release_two", "plans")
    return first, second


def test_moved_class_without_alias_raises(redis_url: str, releases) -> None:
    first, second = releases
    run_child_json(
        "moved-class-write",
        redis_url,
        "k3",
        "release_one.models.Plan",
        extra_path=(first,),
    )
    loaded = run_child_json(
        "moved-class-read", redis_url, "k3", "{}", extra_path=(second,)
    )
    assert loaded["type_name"] == "release_one.models.Plan"
    assert loaded["channel"] == "plan"
    assert loaded["key"] == "warden:cp:{k3}:blobs"
    assert "release_one.models.Plan" in loaded["error"]
    assert "'plan'" in loaded["error"]


def test_moved_class_with_alias_resumes(redis_url: str, releases) -> None:
    first, second = releases
    run_child_json(
        "moved-class-write",
        redis_url,
        "k3",
        "release_one.models.Plan",
        extra_path=(first,),
    )
    aliases = json.dumps({"release_one.models.Plan": "release_two.plans.Plan"})
    loaded = run_child_json(
        "moved-class-read", redis_url, "k3", aliases, extra_path=(second,)
    )
    assert loaded["class"] == "release_two.plans.Plan"
    assert loaded["dump"] == {
        "steps": [{"tool": "refund_order", "arguments": {"order_id": "#W7"}}],
        "created_at": "2026-01-02T03:04:05-05:00",
    }
    assert loaded["utcoffset"] == -5 * 3600
    assert loaded["decision"] == "approved:refund_order"


# -- history ------------------------------------------------------------------------


def _history_of(checkpointer, thread_id: str):
    graph = build_support_graph(checkpointer)
    config = {"configurable": {"thread_id": thread_id}}
    graph.invoke({"trace": []}, config)
    graph.invoke(Command(resume="approved"), config)
    return graph, config


@pytest.mark.parametrize("name", ["memory", "redis"])
def test_history_newest_first(name: str, saver: RedisSaver) -> None:
    checkpointer = InMemorySaver() if name == "memory" else saver
    graph, config = _history_of(checkpointer, "k4")
    listed = list(checkpointer.list(config))
    ids = [item.config["configurable"]["checkpoint_id"] for item in listed]

    assert len(ids) == 8
    assert all(newer > older for newer, older in zip(ids, ids[1:]))
    latest = list(checkpointer.list(config, limit=1))
    assert [item.config["configurable"]["checkpoint_id"] for item in latest] == [
        graph.get_state(config).config["configurable"]["checkpoint_id"]
    ]
    for item, older in zip(listed, listed[1:]):
        assert (
            item.parent_config["configurable"]["checkpoint_id"]
            == older.config["configurable"]["checkpoint_id"]
        )
    assert listed[-1].parent_config is None
    history = [
        s.config["configurable"]["checkpoint_id"]
        for s in graph.get_state_history(config)
    ]
    assert history == ids


def test_history_matches_in_memory(saver: RedisSaver) -> None:
    def shape(checkpointer):
        graph, config = _history_of(checkpointer, "k4")
        return [
            (s.metadata["step"], s.metadata["source"], s.next, sorted(s.values))
            for s in graph.get_state_history(config)
        ]

    assert shape(saver) == shape(InMemorySaver())


def test_history_async_matches_sync(redis_url: str) -> None:
    async def run() -> tuple[list, list]:
        saver = RedisSaver.from_url(redis_url)
        graph = build_support_graph(saver)
        config = {"configurable": {"thread_id": "k4-async"}}
        await graph.ainvoke({"trace": []}, config)
        await graph.ainvoke(Command(resume="approved"), config)
        async_ids = [
            s.config["configurable"]["checkpoint_id"]
            async for s in graph.aget_state_history(config)
        ]
        sync_ids = [
            s.config["configurable"]["checkpoint_id"]
            for s in graph.get_state_history(config)
        ]
        await saver.aclient.aclose()
        saver.client.close()
        return async_ids, sync_ids

    async_ids, sync_ids = asyncio.run(run())
    assert len(async_ids) == 8
    assert async_ids == sync_ids
    assert async_ids == sorted(async_ids, reverse=True)


# -- retention ----------------------------------------------------------------------

TTL_SECONDS = 3


class ReplyState(TypedDict, total=False):
    trace: Annotated[list[str], operator.add]


def _build_slow_reply_graph(checkpointer):
    def draft(state: ReplyState) -> dict:
        return {"trace": ["draft"]}

    async def reply(state: ReplyState) -> dict:
        await asyncio.sleep(30)
        return {"trace": ["reply"]}

    builder = StateGraph(ReplyState)
    builder.add_node("draft", draft)
    builder.add_node("reply", reply)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=checkpointer)


def _cancel_mid_reply(url: str, thread_id: str) -> list:
    async def run() -> list:
        saver = RedisSaver.from_url(url, ttl_seconds=TTL_SECONDS)
        graph = _build_slow_reply_graph(saver)
        config = {"configurable": {"thread_id": thread_id}}
        seen = []
        stream = graph.astream({"trace": []}, config, stream_mode="updates")
        async for update in stream:
            seen.append(update)
            break
        await stream.aclose()
        await saver.aclient.aclose()
        saver.client.close()
        return seen

    return asyncio.run(run())


def _keys_of(client: redis.Redis, thread_id: str) -> list[bytes]:
    return list(client.scan_iter(match=f"*{{{thread_id}}}*"))


def test_retention_covers_every_key(redis_url: str, redis_client: redis.Redis) -> None:
    saver = RedisSaver(redis_client, ttl_seconds=TTL_SECONDS)
    finished = {"configurable": {"thread_id": "finished"}}
    paused = {"configurable": {"thread_id": "paused"}}
    graph = build_support_graph(saver)
    graph.invoke({"trace": []}, finished)
    graph.invoke(Command(resume="approved"), finished)
    graph.invoke({"trace": []}, paused)
    assert _cancel_mid_reply(redis_url, "cancelled") == [
        {"draft": {"trace": ["draft"]}}
    ]
    kept = {"configurable": {"thread_id": "kept"}}
    graph.invoke({"trace": []}, kept)

    threads = ["finished", "paused", "cancelled", "kept"]
    for thread_id in threads:
        keys = _keys_of(redis_client, thread_id)
        assert len(keys) >= 6, thread_id
        ttls = [redis_client.pttl(key) for key in keys]
        assert all(0 < ttl <= TTL_SECONDS * 1000 for ttl in ttls), (thread_id, ttls)

    saver.persist("kept")
    assert all(redis_client.ttl(key) == -1 for key in _keys_of(redis_client, "kept"))
    # The kept thread stays without expiry when it is written again.
    graph.invoke(Command(resume="approved"), kept)
    assert all(redis_client.ttl(key) == -1 for key in _keys_of(redis_client, "kept"))
    for thread_id in ("finished", "paused", "cancelled"):
        assert all(
            redis_client.ttl(key) > 0 for key in _keys_of(redis_client, thread_id)
        )

    time.sleep(TTL_SECONDS + 1)
    for thread_id in ("finished", "paused", "cancelled"):
        assert _keys_of(redis_client, thread_id) == [], thread_id
    assert graph.get_state(kept).values["decision"] == "approved:cancel_pending_order"
    assert graph.get_state(paused).values == {}
