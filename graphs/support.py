"""The governed support graph: intent, retrieval, plan, policy, approval, execution, answer.

Reads run without asking once policy allows them; every write stops the graph at
``request_approval`` until a reviewer decides. The model proposes each step and
code decides whether it may run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict
from typing import Annotated, Any, Literal, get_args, get_origin

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import ValidationError

from graphs.context import SupportContext, resolve_context
from graphs.state import Customer, SupportState, turn_reset
from prompts.support import ANSWER_PROMPT, INTENT_PROMPT, PLAN_PROMPT, PLAN_RETRY_PROMPT
from tools.base import ToolError, ToolSpec
from warden.actions import (
    ActionResult,
    Citation,
    Decision,
    Entities,
    Intent,
    IntentOutput,
    PendingAction,
    Plan,
    PlanOutput,
    PlanStep,
    action_digest,
    action_id_for,
    current_approvals,
)
from warden.answer_check import AnswerCheck
from warden.approvals import APPROVAL_INTERRUPT_TYPE, APPROVING, validate_decisions
from warden.audit import audit_step, checkpoint_of, record_step, recording_policy
from warden.errors import ApprovalExpiredError, ResumeError
from warden.governance import clear_for_execution, record_outcome, register_requests, run_action
from warden.history import render_history
from warden.models import StructuredOutputError
from warden.policy import AUTH_LOOKUPS

logger = logging.getLogger(__name__)

MAX_PLAN_ROUNDS = 3
MAX_APPROVAL_ROUNDS = 3
# Structured calls are tagged so LangGraph's message stream carries only the answer.
_QUIET = {"tags": ["nostream"]}
_FACT_CHARS = 1800

_ORDER_ID = re.compile(r"#?\bW\d{7}\b")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_ZIP = re.compile(r"(?<!\d)\d{5}(?!\d)")
_ITEM_ID = re.compile(r"(?<!\d)\d{10}(?!\d)")
_SELF_INTRODUCTION = re.compile(
    r"\b(?:[Ii] am|I'm|[Tt]his is|[Mm]y name is|[Nn]ame's|[Nn]ame is)\s+([A-Z][a-z]+)\s+([A-Z][a-z]+)\b"
)


def _conversation_text(state: SupportState) -> str:
    return "\n".join(
        str(message.content) for message in state.get("messages", []) if isinstance(message, HumanMessage)
    )


def _authentication_step(entities: Entities) -> PlanStep | None:
    """Return the lookup that authenticates the customer with what they wrote, if any."""
    if entities.emails:
        return PlanStep(
            tool="find_user_id_by_email",
            arguments={"email": entities.emails[0]},
            why="authenticate the customer with the email they gave",
        )
    if entities.first_name and entities.last_name and entities.zip:
        return PlanStep(
            tool="find_user_id_by_name_zip",
            arguments={"first_name": entities.first_name, "last_name": entities.last_name, "zip": entities.zip},
            why="authenticate the customer with the name and zip code they gave",
        )
    return None


def _earlier_messages(state: SupportState) -> list[Any]:
    """Return the messages of earlier turns: everything before the newest customer message."""
    messages = list(state.get("messages", []))
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], HumanMessage):
            return messages[:index]
    return []


def _last_customer_text(state: SupportState) -> str:
    for message in reversed(state.get("messages", [])):
        if isinstance(message, HumanMessage):
            return message.text if hasattr(message, "text") else str(message.content)
    return ""


def _thread_id(config: RunnableConfig) -> str:
    return str(config.get("configurable", {}).get("thread_id", "no-thread"))


def extract_entities(text: str) -> Entities:
    """Find identifiers in ``text`` with patterns, independent of the model."""
    order_ids = []
    for match in _ORDER_ID.findall(text):
        order_id = match if match.startswith("#") else "#" + match
        if order_id not in order_ids:
            order_ids.append(order_id)
    name = _SELF_INTRODUCTION.search(text)
    return Entities(
        order_ids=order_ids,
        emails=list(dict.fromkeys(_EMAIL.findall(text))),
        first_name=name.group(1) if name else None,
        last_name=name.group(2) if name else None,
        zip=next(iter(_ZIP.findall(_ITEM_ID.sub(" ", text))), None),
        item_ids=list(dict.fromkeys(_ITEM_ID.findall(text))),
    )


def _merge_entities(found: Entities, proposed: Entities, text: str) -> Entities:
    # The model's names are kept only when they appear in the message.
    lowered = text.lower()
    first = proposed.first_name if proposed.first_name and proposed.first_name.lower() in lowered else found.first_name
    last = proposed.last_name if proposed.last_name and proposed.last_name.lower() in lowered else found.last_name
    return Entities(
        order_ids=found.order_ids,
        emails=found.emails,
        first_name=first,
        last_name=last,
        zip=found.zip,
        item_ids=found.item_ids,
    )


def capture_intent(state: SupportState, runtime: Runtime[SupportContext], config: RunnableConfig) -> dict[str, Any]:
    """Classify the newest customer message and extract its identifiers."""
    context = resolve_context(runtime.context)
    text = _last_customer_text(state)
    found = extract_entities(text)
    turn = state.get("turn", 0) + 1
    customer = state.get("customer")
    customer_id = customer["user_id"] if customer else None
    last = state["messages"][-1] if state.get("messages") else None
    record_step(
        context.audit, config, node="capture_intent", kind="message_received", turn=turn,
        data={"text": text, "message_id": getattr(last, "id", None), "channel": context.channel},
        customer_id=customer_id,
    )
    model_output = None

    prediction = None
    if context.intent_classifier is not None:
        prediction = context.intent_classifier.predict(text)
    # The classifier decides the label alone when it is confident and the
    # patterns found every identifier the turn needs; otherwise the model runs.
    identity_complete = customer is not None or bool(found.emails) or bool(
        found.first_name and found.last_name and found.zip
    ) or found.zip is None
    if prediction is not None and prediction.path == "classifier" and identity_complete:
        intent = Intent(label=prediction.label, confidence=prediction.confidence, path="classifier", entities=found)
    else:
        structured = context.chat_model.with_structured_output(IntentOutput)
        try:
            output = structured.invoke([HumanMessage(INTENT_PROMPT.format(message=text))], _QUIET)
            label, proposed = output.intent, output.entities
            model_output = output.model_dump(mode="json")
        except StructuredOutputError as error:
            logger.warning("intent output invalid, using out_of_scope: %s", error.detail[:200])
            label, proposed = "out_of_scope", Entities()
        intent = Intent(
            label=label,
            confidence=prediction.confidence if prediction else None,
            path="model",
            entities=_merge_entities(found, proposed, text),
        )
    record_step(
        context.audit, config, node="capture_intent", kind="intent", turn=turn,
        data={**intent.model_dump(mode="json"), "model_output": model_output}, customer_id=customer_id,
    )
    return {**turn_reset(), "turn": turn, "intent": intent}


def retrieve_context(state: SupportState, runtime: Runtime[SupportContext], config: RunnableConfig) -> dict[str, Any]:
    """Fetch the top-k knowledge-base chunks for the customer's message."""
    context = resolve_context(runtime.context)
    hits = [] if context.index is None else context.index.search(_last_customer_text(state), k=context.retrieval_k)
    retrieved = [
        Citation(
            chunk_id=hit.chunk_id,
            source=hit.source,
            title=hit.title,
            heading=hit.heading,
            text=hit.text,
            score=float(hit.score),
        )
        for hit in hits
    ]
    record_step(
        context.audit, config, node="retrieve_context", kind="retrieved", turn=state.get("turn", 0),
        data={"chunks": [chunk.model_dump(mode="json", exclude={"text"}) for chunk in retrieved]},
    )
    return {"retrieved": retrieved}


def _annotation_text(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _annotation_text(args[0])
    if origin is Literal:
        return "|".join(json.dumps(value) for value in args)
    if origin is not None and args:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_annotation_text(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _describe_tools(tools: dict[str, ToolSpec]) -> str:
    lines = []
    for spec in tools.values():
        if spec.name in AUTH_LOOKUPS:
            continue
        fields = ", ".join(
            f"{name}: {_annotation_text(info.annotation)}" for name, info in spec.args_schema.model_fields.items()
        )
        summary = spec.description.strip().split(". ")[0].rstrip(".")
        lines.append(f"- {spec.name}({fields}) [{spec.access}] {summary}.")
    return "\n".join(lines)


def _compact(output: Any) -> str:
    text = json.dumps(output, separators=(",", ":"), default=str)
    return text if len(text) <= _FACT_CHARS else text[:_FACT_CHARS] + "…"


def _render_facts(state: SupportState) -> str:
    lines = []
    customer = state.get("customer")
    if customer:
        lines.append(f"authenticated customer: {customer['user_id']}")
    for result in state.get("lookups", []):
        args = json.dumps(result.arguments, separators=(",", ":"))
        if result.status == "done":
            lines.append(f"{result.tool} {args} -> {_compact(result.output)}")
        else:
            lines.append(f"{result.tool} {args} -> {result.status}: {result.error}")
    for note in state.get("notes", []):
        lines.append(f"reviewer asked: {note}")
    return "\n".join(lines) or "none yet"


def _render_knowledge(chunks: list[Citation]) -> str:
    if not chunks:
        return "no articles found"
    return "\n".join(
        f'<chunk id="{chunk.chunk_id}" title="{chunk.title}">\n{chunk.text}\n</chunk>' for chunk in chunks
    )


def validate_plan(output: PlanOutput, tools: dict[str, ToolSpec], chunk_ids: set[str]) -> list[PlanStep]:
    """Return the plan's steps with arguments normalised by each tool's schema.

    Raises ``ValueError`` naming the first step that names an unknown tool or
    whose arguments do not match the tool's schema. Citations of chunks that
    were not retrieved are dropped, never passed on.
    """
    steps = []
    for index, step in enumerate(output.steps):
        spec = tools.get(step.tool)
        if spec is None:
            raise ValueError(f"step {index + 1} names unknown tool {step.tool!r}; use one of {sorted(tools)}")
        try:
            arguments = spec.args_schema.model_validate(step.arguments).model_dump()
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ValueError(f"step {index + 1} ({step.tool}) has invalid arguments: {problems}") from None
        citations = [chunk_id for chunk_id in step.citations if chunk_id in chunk_ids]
        steps.append(PlanStep(tool=step.tool, arguments=arguments, why=step.why, citations=citations))
    return steps


def plan_actions(state: SupportState, runtime: Runtime[SupportContext], config: RunnableConfig) -> dict[str, Any]:
    """Ask the model for a typed plan and validate it against the tool schemas.

    An invalid plan is retried once with the validation error; a second invalid
    plan becomes an empty plan whose ``errors`` the answer explains.
    """
    context = resolve_context(runtime.context)
    retrieved = state.get("retrieved", [])
    chunk_ids = {chunk.chunk_id for chunk in retrieved}
    done = {(r.tool, json.dumps(r.arguments, sort_keys=True)) for r in state.get("lookups", [])}
    prompt = PLAN_PROMPT.format(
        tools=_describe_tools(dict(context.tools)),
        knowledge=_render_knowledge(retrieved),
        history=render_history(_earlier_messages(state)),
        message=_last_customer_text(state),
        facts=_render_facts(state),
        feedback="",
    )
    structured = context.chat_model.with_structured_output(PlanOutput)
    messages = [HumanMessage(prompt)]
    errors: list[str] = []
    steps: list[PlanStep] | None = None
    question = ""
    model_outputs: list[Any] = []
    for _attempt in range(2):
        try:
            output = structured.invoke(messages, _QUIET)
            model_outputs.append(output.model_dump(mode="json"))
            steps = validate_plan(output, dict(context.tools), chunk_ids)
            question = output.question
            break
        except (StructuredOutputError, ValueError) as error:
            detail = error.detail if isinstance(error, StructuredOutputError) else str(error)
            errors.append(detail)
            logger.info("plan invalid attempt=%d error=%s", _attempt + 1, detail[:300])
            messages = [HumanMessage(prompt + "\n" + PLAN_RETRY_PROMPT.format(error=detail))]
    steps = [s for s in steps or [] if (s.tool, json.dumps(s.arguments, sort_keys=True)) not in done]
    # Authentication uses only what the customer wrote, never an identity the
    # model guessed: model-proposed lookups are replaced by one built from the
    # extracted identifiers.
    steps = [s for s in steps if s.tool not in AUTH_LOOKUPS]
    intent = state.get("intent")
    if state.get("customer") is None and intent is not None:
        step = _authentication_step(intent.entities)
        if step is not None and (step.tool, json.dumps(step.arguments, sort_keys=True)) not in done:
            steps.insert(0, step)
    previous = state.get("plan")
    plan = Plan(
        steps=steps,
        question=question,
        revision=(previous.revision + 1) if previous else 1,
        errors=errors if not steps and errors else [],
    )
    plan_round = state.get("plan_rounds", 0) + 1
    record_step(
        context.audit, config, node="plan_actions", kind="plan", turn=state.get("turn", 0),
        round=state.get("approval_round", 0), ordinal=plan_round,
        data={**plan.model_dump(mode="json"), "invalid_outputs": errors, "model_outputs": model_outputs},
    )
    return {"plan": plan, "plan_rounds": plan_round}


def _call_id(thread_id: str, turn: int, label: str, index: int) -> str:
    digest = hashlib.sha256(f"{thread_id}|{turn}|{label}|{index}".encode()).hexdigest()
    return "call_" + digest[:16]


def run_lookups(state: SupportState, runtime: Runtime[SupportContext], config: RunnableConfig) -> dict[str, Any]:
    """Run the plan's read-only steps that policy allows, in order, without asking.

    A successful ``find_user_id_*`` authenticates the customer for the rest of
    the conversation; a lookup that finds a different customer is denied.
    """
    context = resolve_context(runtime.context)
    plan = state["plan"]
    customer = state.get("customer")
    lookups = list(state.get("lookups", []))
    thread_id = _thread_id(config)
    conversation = _conversation_text(state)
    calls, tool_messages = [], []
    for index, step in enumerate(plan.steps):
        spec = context.tools[step.tool]
        if spec.access == "write":
            continue
        call_id = _call_id(thread_id, state.get("turn", 0), f"lookup{state.get('plan_rounds', 0)}", index)
        policy, policy_reads = recording_policy(context.policy)
        verdict = policy.check(step, customer["user_id"] if customer else None, conversation)
        # Lookups of later plan rounds in the same turn need their own event ids.
        audit_at = {
            "node": "run_lookups", "turn": state.get("turn", 0), "round": state.get("approval_round", 0),
            "ordinal": f"p{state.get('plan_rounds', 0)}s{index}",
        }
        record_step(
            context.audit, config, kind="policy_verdict", **audit_at,
            data={"step_index": index, "action_id": call_id, "tool": step.tool, "arguments": step.arguments,
                  "policy_version": context.policy.version, "policy_reads": policy_reads,
                  **verdict.model_dump(mode="json")},
        )
        if verdict.verdict == "deny":
            result = ActionResult(
                action_id=call_id, tool=step.tool, arguments=step.arguments, status="denied",
                error=f"{verdict.rule}: {verdict.reason}",
            )
        else:
            try:
                output = context.store.call(step.tool, step.arguments)
                result = ActionResult(action_id=call_id, tool=step.tool, arguments=step.arguments, status="done", output=output)
            except ToolError as error:
                result = ActionResult(action_id=call_id, tool=step.tool, arguments=step.arguments, status="failed", error=str(error))
        if result.status == "done" and step.tool.startswith("find_user_id_by_"):
            method = "email" if step.tool.endswith("email") else "name_zip"
            if customer is None:
                customer = Customer(user_id=result.output, method=method)
            elif customer["user_id"] != result.output:
                result = result.model_copy(update={
                    "status": "denied", "output": None,
                    "error": "auth.one_customer: this conversation is already authenticated as another customer",
                })
        record_step(
            context.audit, config, kind="tool_result", **audit_at,
            data=result.model_dump(mode="json"), customer_id=customer["user_id"] if customer else None,
        )
        lookups.append(result)
        calls.append({"name": step.tool, "args": step.arguments, "id": call_id, "type": "tool_call"})
        tool_messages.append(_tool_message(result, call_id))
    update: dict[str, Any] = {"lookups": lookups, "customer": customer}
    if calls:
        update["messages"] = [AIMessage(content="", tool_calls=calls), *tool_messages]
    return update


def _tool_message(result: ActionResult, call_id: str, decision: Decision | None = None) -> ToolMessage:
    body: dict[str, Any] = {"status": result.status}
    if result.output is not None:
        body["output"] = result.output
    if result.error:
        body["error"] = result.error
    if decision is not None:
        body["decision"] = decision.decision
        body["reviewer"] = decision.reviewer
        if decision.reason:
            body["reason"] = decision.reason
    return ToolMessage(
        content=json.dumps(body, default=str),
        tool_call_id=call_id,
        name=result.tool,
        status="success" if result.status == "done" else "error",
        artifact={"status": result.status, "decision": decision.decision if decision else None},
    )


def check_policy(state: SupportState, runtime: Runtime[SupportContext], config: RunnableConfig) -> dict[str, Any]:
    """Evaluate each write step; deny what breaks a rule, hold the rest for a reviewer."""
    context = resolve_context(runtime.context)
    customer = state.get("customer")
    customer_id = customer["user_id"] if customer else None
    thread_id = _thread_id(config)
    approval_round = state.get("approval_round", 0)
    pending, denied = [], []
    for index, step in enumerate(state["plan"].steps):
        spec = context.tools[step.tool]
        if spec.access != "write":
            continue
        policy, policy_reads = recording_policy(context.policy)
        verdict = policy.check(step, customer_id)
        action_id = action_id_for(thread_id, state.get("turn", 0), index, step.tool, step.arguments, approval_round)
        record_step(
            context.audit, config, node="check_policy", kind="policy_verdict", turn=state.get("turn", 0),
            round=approval_round, ordinal=index, customer_id=customer_id,
            data={"step_index": index, "action_id": action_id, "tool": step.tool, "arguments": step.arguments,
                  "policy_version": context.policy.version, "policy_reads": policy_reads,
                  **verdict.model_dump(mode="json")},
        )
        if verdict.verdict == "deny":
            denied.append(ActionResult(
                action_id=action_id, tool=step.tool, arguments=step.arguments, status="denied",
                error=f"{verdict.rule}: {verdict.reason}",
            ))
            continue
        pending.append(PendingAction(
            action_id=action_id,
            tool=step.tool,
            arguments=step.arguments,
            step_index=index,
            risk=spec.risk,
            scope=spec.scope,
            irreversible=spec.irreversible,
            rationale=step.why,
            citations=step.citations,
            verdict=verdict,
            digest=action_digest(step.tool, step.arguments, index, context.policy.version),
        ))
    # Outcomes of the turn's earlier approval rounds move to ``settled`` so the
    # answer still reports them. A ``responded`` result is left out, because the
    # re-planned step that follows it has its own result.
    settled = [*state.get("settled", []), *(r for r in state.get("results", []) if r.status != "responded")]
    update: dict[str, Any] = {"pending": pending, "denied": denied, "results": denied, "settled": settled}
    if denied:
        update["messages"] = _exchange_messages("denied", denied, {})
    return update


def _exchange_messages(label: str, results: list[ActionResult], decisions: dict[str, Decision | None]) -> list[Any]:
    """Return one tool-call message and one tool result per result, with stable message ids.

    Stable ids make a re-run of the node replace its messages instead of
    appending a second result for the same tool call.
    """
    calls = [{"name": r.tool, "args": r.arguments, "id": r.action_id, "type": "tool_call"} for r in results]
    group = hashlib.sha256("|".join(r.action_id for r in results).encode()).hexdigest()[:16]
    messages: list[Any] = [AIMessage(content="", tool_calls=calls, id=f"{label}-{group}")]
    for result in results:
        message = _tool_message(result, result.action_id, decisions.get(result.action_id))
        message.id = f"{label}-result-{result.action_id}"
        messages.append(message)
    return messages


def request_approval(state: SupportState, runtime: Runtime[SupportContext], config: RunnableConfig) -> dict[str, Any]:
    """Pause until a reviewer decides every pending action.

    A resume value that does not validate, or that loses a race with another
    reviewer in the ledger, is not applied: the node pauses again with the
    error in the payload, so the thread stays paused and nothing runs.
    LangGraph re-runs this node from its start on each resume, so everything
    before ``interrupt`` is idempotent: ledger records are created only once.
    """
    context = resolve_context(runtime.context)
    pending = state["pending"]
    customer = state.get("customer")
    customer_id = customer["user_id"] if customer else None
    thread_id = _thread_id(config)
    round_number = state.get("approval_round", 0) + 1
    plan = state.get("plan")
    # Ledger events (request, decisions) carry this node's step in the audit log.
    step_scope = {"node": "request_approval", "turn": state.get("turn", 0), "round": round_number, **checkpoint_of(config)}
    with audit_step(**step_scope):
        records = register_requests(
            context, pending, thread_id=thread_id, round_number=round_number, customer_id=customer_id,
            request_context={
                "message": _last_customer_text(state),
                "plan": plan.model_dump(mode="json") if plan else None,
                "citations": [chunk.model_dump(mode="json") for chunk in state.get("retrieved", [])],
            },
        )
    payload: dict[str, Any] = {
        "type": APPROVAL_INTERRUPT_TYPE,
        "thread_id": thread_id,
        "round": round_number,
        "policy_version": context.policy.version,
        "customer": customer_id,
        "message": _last_customer_text(state),
        "actions": [action.model_dump(mode="json") for action in pending],
        "expires_at": {action_id: record.expires_at.isoformat() for action_id, record in records.items()},
        "citations": {
            chunk.chunk_id: {"title": chunk.title, "source": chunk.source, "text": chunk.text}
            for chunk in state.get("retrieved", [])
        },
    }
    collected: dict[str, list[Decision]] = {}
    while True:
        value = interrupt(payload)
        try:
            decisions = validate_decisions(value, pending, context, customer_id, collected)
            if context.ledger is not None:
                with audit_step(**step_scope):
                    context.ledger.decide(decisions)
        except ApprovalExpiredError:
            expired = {
                a.action_id: Decision(decision="expire", reviewer="deadline", reason="the approval deadline passed")
                for a in pending
            }
            with audit_step(**step_scope):
                context.ledger.close(list(expired), "expire", reviewer="deadline")
            return {"decisions": expired, "approval_round": round_number}
        except ResumeError as error:
            payload = {**payload, "error": str(error)}
            continue
        final = {}
        waiting = []
        for action in pending:
            entries = collected.setdefault(action.action_id, [])
            decision = decisions.get(action.action_id)
            if decision is not None:
                entries.append(decision)
            approvals = current_approvals(entries)
            if entries and entries[-1].decision not in APPROVING:
                final[action.action_id] = entries[-1]
            elif len(approvals) >= action.verdict.approvals_required:
                # Approvals count only for the arguments they saw: after an edit,
                # the edit and the approvals that follow it decide, and the
                # edited arguments run.
                final[action.action_id] = approvals[0] if approvals[0].decision == "edit" else approvals[-1]
            else:
                waiting.append(action.action_id)
        if not waiting:
            return {"decisions": final, "approval_round": round_number}
        payload = {
            **payload,
            "error": None,
            "awaiting_second_approval": waiting,
            "approved_by": {a: [d.reviewer for d in current_approvals(collected[a])] for a in waiting},
            # The arguments a waiting action now runs with, when a reviewer edited it;
            # reviewers must see these, not the proposed ones.
            "edits": {
                a: {"reviewer": edits[-1].reviewer, "arguments": edits[-1].arguments}
                for a in waiting
                if (edits := [d for d in collected[a] if d.decision == "edit"])
            },
        }


def execute_actions(state: SupportState, runtime: Runtime[SupportContext], config: RunnableConfig) -> dict[str, Any]:
    """Run each approved or edited action once; record every outcome.

    Whether an action may run comes from the approval ledger, and policy is
    checked again just before each call, because the world may have changed
    while the approval waited. The effect journal makes a re-run of this node,
    by retry, by edge or by an explicit jump, return the recorded outcome
    instead of acting twice.
    """
    context = resolve_context(runtime.context)
    customer = state.get("customer")
    customer_id = customer["user_id"] if customer else None
    decisions = state.get("decisions", {})
    thread_id = _thread_id(config)
    results = list(state.get("denied", []))
    notes = list(state.get("notes", []))
    executed, used_decisions = [], {}
    for action in state.get("pending", []):
        clearance = clear_for_execution(context, action, decisions.get(action.action_id), customer_id, thread_id)
        decision = clearance.decision
        reviewer = decision.reviewer if decision else None
        audit_at = {"node": "execute_actions", "turn": state.get("turn", 0), "round": state.get("approval_round", 0)}
        if clearance.status is None:
            record_step(
                context.audit, config, kind="execution_started", ordinal=action.step_index, **audit_at,
                data={"action_id": action.action_id, "tool": action.tool, "arguments": clearance.arguments,
                      "reviewer": reviewer, "idempotency_key": f"{thread_id}:{action.action_id}"},
            )
            result = run_action(context, thread_id, action, clearance.arguments, reviewer)
        elif clearance.status == "responded":
            message = decision.message if decision else ""
            result = ActionResult(
                action_id=action.action_id, tool=action.tool, arguments=clearance.arguments,
                status="responded", output=message, reviewer=reviewer,
            )
            notes.append(message or "")
        else:
            result = ActionResult(
                action_id=action.action_id, tool=action.tool, arguments=clearance.arguments,
                status=clearance.status, error=clearance.error, reviewer=reviewer,
            )
        record_step(
            context.audit, config, kind="execution_finished", ordinal=action.step_index, **audit_at,
            data=result.model_dump(mode="json"), customer_id=customer_id,
        )
        with audit_step(**audit_at, **checkpoint_of(config)):
            record_outcome(context, thread_id, result)
        results.append(result)
        executed.append(result)
        used_decisions[action.action_id] = decision
    update: dict[str, Any] = {"results": results, "notes": notes}
    if executed:
        update["messages"] = _exchange_messages("executed", executed, used_decisions)
    return update


def turn_outcomes(state: SupportState) -> list[ActionResult]:
    """Return the results of every approval round of the turn, earlier rounds first."""
    return [*state.get("settled", []), *state.get("results", [])]


def _render_outcomes(state: SupportState) -> str:
    lines = []
    customer = state.get("customer")
    lines.append(f"customer authenticated: {customer['user_id']}" if customer else "customer not authenticated")
    for result in state.get("lookups", []):
        if result.status == "done":
            lines.append(f"looked up {result.tool} {json.dumps(result.arguments)}: {_compact(result.output)}")
        else:
            lines.append(f"lookup {result.tool} failed: {result.status} ({result.error})")
    for result in turn_outcomes(state):
        if result.status == "done":
            lines.append(f"CHANGE DONE: {result.tool} {json.dumps(result.arguments)}")
        else:
            why = result.error or result.output
            lines.append(f"CHANGE NOT DONE ({result.status}): {result.tool} {json.dumps(result.arguments)}; {why}")
    plan = state.get("plan")
    if plan is not None and plan.question:
        lines.append(f"ask the customer: {plan.question}")
    if plan is not None and plan.errors:
        lines.append("no action was taken because the request could not be turned into a valid plan")
    return "\n".join(lines)


def respond(state: SupportState, runtime: Runtime[SupportContext], config: RunnableConfig) -> dict[str, Any]:
    """Write the grounded answer; it enters the history only once complete.

    The model's text goes through the answer check (``warden.answer_check``)
    sentence by sentence, and only checked sentences reach the stream, as
    custom events ``{"answer": text}``. The model call itself is kept out of
    LangGraph's message stream, which would carry the unchecked tokens.
    """
    context = resolve_context(runtime.context)
    retrieved = state.get("retrieved", [])
    prompt = ANSWER_PROMPT.format(
        knowledge=_render_knowledge(retrieved),
        message=_last_customer_text(state),
        outcomes=_render_outcomes(state),
    )
    check = AnswerCheck(
        {chunk.chunk_id for chunk in retrieved}, turn_outcomes(state), context.tools
    )
    write = get_stream_writer()
    message_id = None
    model_text = ""
    for chunk in context.chat_model.stream([HumanMessage(prompt)], config=_QUIET):
        message_id = message_id or chunk.id
        piece = chunk.text if hasattr(chunk, "text") else str(chunk.content)
        model_text += piece
        released = check.feed(piece)
        if released:
            write({"answer": released})
    released = check.finish()
    if released:
        write({"answer": released})
    text = check.text
    record_step(
        context.audit, config, node="respond", kind="answer_sent", turn=state.get("turn", 0),
        round=state.get("approval_round", 0),
        data={
            "text": text,
            "model_text": model_text,
            "message_id": message_id,
            "dropped_sentences": [asdict(dropped) for dropped in check.dropped],
            "removed_citations": check.removed_citations,
        },
    )
    if check.dropped or check.removed_citations:
        logger.warning(
            "answer check changed the answer thread_id=%s dropped=%d removed_citations=%s",
            _thread_id(config), len(check.dropped), check.removed_citations,
        )
    return {"answer": text, "messages": [AIMessage(content=text, id=message_id)]}


def route_after_plan(state: SupportState) -> Literal["run_lookups", "respond"]:
    return "run_lookups" if state["plan"].steps else "respond"


def route_after_lookups(state: SupportState, runtime: Runtime[SupportContext]) -> Literal["check_policy", "plan_actions", "respond"]:
    context = resolve_context(runtime.context)
    steps = state["plan"].steps
    if any(context.tools[step.tool].access == "write" for step in steps):
        return "check_policy"
    if state.get("plan_rounds", 0) < MAX_PLAN_ROUNDS and any(context.tools[s.tool].access == "read" for s in steps):
        return "plan_actions"
    return "respond"


def route_after_policy(state: SupportState) -> Literal["request_approval", "respond"]:
    return "request_approval" if state.get("pending") else "respond"


def route_after_execute(state: SupportState) -> Literal["plan_actions", "respond"]:
    revise = any(r.status == "responded" for r in state.get("results", []))
    if revise and state.get("approval_round", 0) < MAX_APPROVAL_ROUNDS:
        return "plan_actions"
    return "respond"


builder = StateGraph(SupportState, context_schema=SupportContext)
builder.add_node(capture_intent)
builder.add_node(retrieve_context)
builder.add_node(plan_actions)
builder.add_node(run_lookups)
builder.add_node(check_policy)
builder.add_node(request_approval)
builder.add_node(execute_actions)
builder.add_node(respond)
builder.add_edge(START, "capture_intent")
builder.add_edge("capture_intent", "retrieve_context")
builder.add_edge("retrieve_context", "plan_actions")
builder.add_conditional_edges("plan_actions", route_after_plan)
builder.add_conditional_edges("run_lookups", route_after_lookups)
builder.add_conditional_edges("check_policy", route_after_policy)
builder.add_edge("request_approval", "execute_actions")
builder.add_conditional_edges("execute_actions", route_after_execute)
builder.add_edge("respond", END)

graph = builder.compile()
"""The graph without a checkpointer, for LangGraph Studio, which supplies the saver; hosts call ``build_graph``."""


def build_graph(checkpointer: Any = None) -> Any:
    """Compile the support graph with ``checkpointer`` (a saver, or None for none)."""
    return builder.compile(checkpointer=checkpointer, name="warden-support")
