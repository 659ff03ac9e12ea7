"""RedisSaver under real graphs: parallel interrupts, subgraphs, large state and
every durability mode, each compared with InMemorySaver."""

from __future__ import annotations

import asyncio
import operator
import os
from typing import Annotated, TypedDict

import pytest
import redis
from checkpoint_support import (
    build_fan_interrupt_graph,
    build_parallel_interrupt_graph,
    build_subgraph_graph,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from warden.checkpoint import RedisSaver


def _resume_all(graph, config: dict) -> dict:
    state = graph.get_state(config)
    answers = {}
    for interrupt in state.interrupts:
        answers[interrupt.id] = "yes" if interrupt.value == "refund?" else "no"
    return graph.invoke(Command(resume=answers), config)


@pytest.mark.parametrize("name", ["memory", "redis"])
def test_parallel_interrupts_one_resume(name: str, saver: RedisSaver) -> None:
    checkpointer = InMemorySaver() if name == "memory" else saver
    graph = build_parallel_interrupt_graph(checkpointer)
    config = {"configurable": {"thread_id": "parallel"}}
    first = graph.invoke({"answers": []}, config)
    assert sorted(i.value for i in first["__interrupt__"]) == ["email?", "refund?"]
    assert len({i.id for i in first["__interrupt__"]}) == 2

    result = _resume_all(graph, config)
    assert sorted(result["answers"]) == ["email=no", "refund=yes"]
    assert result["trace"] == ["join"]
    assert graph.get_state(config).next == ()


def test_parallel_interrupts_async(redis_url: str) -> None:
    async def run() -> list[str]:
        saver = RedisSaver.from_url(redis_url)
        graph = build_parallel_interrupt_graph(saver)
        config = {"configurable": {"thread_id": "parallel-async"}}
        await graph.ainvoke({"answers": []}, config)
        state = await graph.aget_state(config)
        resume = {i.id: i.value.rstrip("?") for i in state.interrupts}
        result = await graph.ainvoke(Command(resume=resume), config)
        await saver.aclient.aclose()
        saver.client.close()
        return sorted(result["answers"])

    assert asyncio.run(run()) == ["email=email", "refund=refund"]


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
def test_finished_branch_not_rerun(
    durability: str, saver: RedisSaver, tmp_path
) -> None:
    counts = {}
    for name, checkpointer in (("memory", InMemorySaver()), ("redis", saver)):
        marker = tmp_path / f"{name}.txt"
        graph = build_fan_interrupt_graph(checkpointer, marker=marker)
        config = {"configurable": {"thread_id": f"fan-{durability}"}}
        graph.invoke({"trace": []}, config, durability=durability)
        pending = graph.get_state(config)
        assert [t.name for t in pending.tasks if t.interrupts] == ["ask"]
        result = graph.invoke(Command(resume="yes"), config, durability=durability)
        assert sorted(result["trace"]) == ["ask", "fast", "join", "start"]
        counts[name] = marker.read_text().count("fast")
    assert counts == {"memory": 1, "redis": 1}


def test_subgraph_namespaces(saver: RedisSaver) -> None:
    graph = build_subgraph_graph(saver)
    config = {"configurable": {"thread_id": "sub"}}
    graph.invoke({"trace": []}, config)

    state = graph.get_state(config, subgraphs=True)
    assert state.next == ("review",)
    child_state = state.tasks[0].state
    child_ns = child_state.config["configurable"]["checkpoint_ns"]
    assert child_ns.startswith("review:")
    assert child_state.next == ("approve",)

    root = list(saver.list({"configurable": {"thread_id": "sub", "checkpoint_ns": ""}}))
    child = list(
        saver.list({"configurable": {"thread_id": "sub", "checkpoint_ns": child_ns}})
    )
    every = list(saver.list({"configurable": {"thread_id": "sub"}}))
    assert {t.config["configurable"]["checkpoint_ns"] for t in root} == {""}
    assert {t.config["configurable"]["checkpoint_ns"] for t in child} == {child_ns}
    assert len(every) == len(root) + len(child)
    assert len(child) >= 2
    history = list(graph.get_state_history(config))
    assert len(history) == len(root)

    result = graph.invoke(Command(resume="ok"), config)
    assert result["trace"] == ["before", "after"]
    assert result["review"] == ["draft", "approve=ok"]


def test_subgraph_history_matches_in_memory(saver: RedisSaver) -> None:
    def shape(checkpointer):
        graph = build_subgraph_graph(checkpointer)
        config = {"configurable": {"thread_id": "sub"}}
        graph.invoke({"trace": []}, config)
        graph.invoke(Command(resume="ok"), config)
        return [
            (s.metadata["step"], s.next, s.values)
            for s in graph.get_state_history(config)
        ]

    assert shape(saver) == shape(InMemorySaver())


class BigState(TypedDict, total=False):
    document: bytes
    notes: Annotated[list[str], operator.add]


def test_one_megabyte_state(saver: RedisSaver, redis_client: redis.Redis) -> None:
    document = os.urandom(1024 * 1024)

    def load(state: BigState) -> dict:
        return {"document": document, "notes": ["loaded"]}

    def annotate(state: BigState) -> dict:
        return {"notes": [f"size={len(state['document'])}"]}

    builder = StateGraph(BigState)
    builder.add_node("load", load)
    builder.add_node("annotate", annotate)
    builder.add_edge(START, "load")
    builder.add_edge("load", "annotate")
    builder.add_edge("annotate", END)
    graph = builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "big"}}
    graph.invoke({"notes": []}, config)

    restored = saver.get_tuple(config)
    assert restored.checkpoint["channel_values"]["document"] == document
    assert restored.checkpoint["channel_values"]["notes"] == ["loaded", "size=1048576"]
    # The unchanged 1 MB channel is stored once, not once per checkpoint.
    blob_bytes = redis_client.memory_usage("warden:cp:{big}:blobs", samples=0)
    assert 1024 * 1024 < blob_bytes < 2 * 1024 * 1024


@pytest.mark.parametrize("name", ["memory", "redis"])
def test_list_filter_any_metadata_key(name: str, saver: RedisSaver) -> None:
    checkpointer = InMemorySaver() if name == "memory" else saver
    graph = build_parallel_interrupt_graph(checkpointer)
    config = {"configurable": {"thread_id": "filter"}}
    tagged = {**config, "metadata": {"tenant": "acme", "priority": 2}}
    graph.invoke({"answers": []}, tagged)
    _resume_all(graph, config)

    every = list(checkpointer.list(config))
    tenant = list(checkpointer.list(config, filter={"tenant": "acme"}))
    both = list(checkpointer.list(config, filter={"tenant": "acme", "priority": 2}))
    inputs = list(checkpointer.list(config, filter={"source": "input"}))
    loop_latest = list(checkpointer.list(config, filter={"source": "loop"}, limit=1))
    assert len(every) == 4
    assert [t.metadata["step"] for t in tenant] == [0, -1]
    assert [t.metadata["step"] for t in both] == [0, -1]
    assert [t.metadata["step"] for t in inputs] == [-1]
    assert [t.checkpoint["id"] for t in loop_latest] == [every[0].checkpoint["id"]]
    assert list(checkpointer.list(config, filter={"tenant": "other"})) == []


def test_list_before_pages(saver: RedisSaver) -> None:
    from langgraph.checkpoint.conformance.test_utils import (  # noqa: PLC0415
        generate_checkpoint,
    )

    config = {"configurable": {"thread_id": "pages", "checkpoint_ns": ""}}
    ids = []
    for step in range(70):
        checkpoint = generate_checkpoint()
        saver.put(config, checkpoint, {"source": "loop", "step": step}, {})
        ids.append(checkpoint["id"])
    listed = [t.checkpoint["id"] for t in saver.list(config)]
    assert listed == ids[::-1]
    before = {"configurable": {"checkpoint_id": ids[40]}}
    assert [t.checkpoint["id"] for t in saver.list(config, before=before, limit=5)] == (
        ids[39:34:-1]
    )
    filtered = [t.metadata["step"] for t in saver.list(config, filter={"step": 3})]
    assert filtered == [3]


def test_list_filter_many_pages(saver: RedisSaver) -> None:
    from langgraph.checkpoint.conformance.test_utils import (  # noqa: PLC0415
        generate_checkpoint,
    )

    config = {"configurable": {"thread_id": "many", "checkpoint_ns": ""}}
    ids = []
    for step in range(600):
        checkpoint = generate_checkpoint()
        saver.put(
            config,
            checkpoint,
            {"source": "loop", "step": step, "even": step % 2 == 0},
            {},
        )
        ids.append(checkpoint["id"])
    newest_first = ids[::-1]
    even = [t.checkpoint["id"] for t in saver.list(config, filter={"even": True})]
    assert even == newest_first[1::2]
    odd = [
        t.checkpoint["id"]
        for t in saver.list(config, filter={"even": False}, limit=150)
    ]
    assert odd == newest_first[0::2][:150]
    assert [t.checkpoint["id"] for t in saver.list(config)] == newest_first


def test_list_all_threads(saver: RedisSaver) -> None:
    graph = build_parallel_interrupt_graph(saver)
    for thread_id in ("a{1}", "b}", "c"):
        graph.invoke({"answers": []}, {"configurable": {"thread_id": thread_id}})
    threads = {t.config["configurable"]["thread_id"] for t in saver.list(None)}
    assert threads == {"a{1}", "b}", "c"}
    assert len(list(saver.list(None, limit=3))) == 3
