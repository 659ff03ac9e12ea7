"""Replay of a recorded thread: a timeline, and dry-run re-execution or forks without side effects.

``timeline`` joins the thread's checkpoints (read through the Redis saver) with
its audit entries. ``dry_run`` runs the graph again on an in-memory
checkpointer. Tool calls return the audit log's recorded results, the model
returns its recorded outputs and approvals resume with the recorded decisions. It then reports where the re-run, under the current or a
given policy, departs from what was recorded.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from graphs.support import build_graph
from tools.base import ToolError
from warden.actions import canonical_json
from warden.approvals import APPROVAL_INTERRUPT_TYPE
from warden.audit import AuditEntry
from warden.checkpoint_serde import CheckpointSerializer
from warden.errors import ReplayError
from warden.intent import IntentPrediction
from warden.models import ScriptedChatModel
from warden.policy import PolicyConfig, PolicyEngine

logger = logging.getLogger(__name__)

# Values that differ on every run (clock times, run-scoped message and
# checkpoint ids); they are left out when two runs are compared.
VOLATILE_KEYS = frozenset(
    {"at", "created_at", "updated_at", "expires_at", "message_id", "checkpoint_id", "checkpoint_ns"}
)
_MAX_RESUMES = 20


class UnrecordedCallError(ToolError):
    """A dry run asked for a tool result that the audit log does not contain.

    It is a ``ToolError``, so the graph records the call as failed and goes on.
    The report lists the call, and the store is never called.
    """


def _key(tool: str, arguments: Any) -> tuple[str, str]:
    return tool, canonical_json(arguments)


class RecordedStore:
    """A store whose ``call`` returns recorded tool results and policy reads, in recorded order.

    Calls of the same tool with the same arguments get the recorded outputs
    one after another; the last one repeats. ``calls`` lists every call made.
    """

    def __init__(self, entries: list[AuditEntry]) -> None:
        self._records: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self._served: dict[tuple[str, str], int] = defaultdict(int)
        self.calls: list[dict[str, Any]] = []
        for item in entries:
            data = item.data or {}
            if item.entry["kind"] == "policy_verdict":
                for read in data.get("policy_reads", []):
                    self._records[_key(read["tool"], read["arguments"])].append(read)
            elif item.entry["kind"] in ("tool_result", "execution_finished"):
                self._records[_key(data["tool"], data["arguments"])].append(
                    {"output": data.get("output"), "error": None if data.get("status") == "done" else data.get("error")}
                )

    def call(self, tool: str, arguments: dict[str, Any], *, idempotency_key: str | None = None) -> Any:
        key = _key(tool, arguments)
        records = self._records.get(key)
        self.calls.append({"tool": tool, "arguments": arguments, "recorded": bool(records)})
        if not records:
            raise UnrecordedCallError(
                f"dry run: no recorded result for {tool} {key[1]}; a dry run never calls the store"
            )
        record = records[min(self._served[key], len(records) - 1)]
        self._served[key] += 1
        if record.get("error"):
            raise ToolError(record["error"])
        return copy.deepcopy(record.get("output"))


class RecordedChatModel(ScriptedChatModel):
    """The scripted model loaded with a thread's recorded outputs; raises once they run out."""

    def _next(self, key: str) -> Any:
        used = sum(1 for call in self.calls if call == key)
        if used >= len(self.script.get(key, [])):
            raise ReplayError(
                f"dry run: the model was asked for {key} output #{used + 1}, but the audit log "
                "records no more; the re-run asked the model something the original run did not"
            )
        return super()._next(key)


class RecordedIndex:
    """Returns the recorded retrieval hits of each turn, in order, without their text."""

    def __init__(self, entries: list[AuditEntry]) -> None:
        self._hits = [
            [SimpleNamespace(text="", **chunk) for chunk in (item.data or {}).get("chunks", [])]
            for item in entries
            if item.entry["kind"] == "retrieved"
        ]
        self._served = 0

    def search(self, text: str, k: int = 4) -> list[Any]:
        hits = self._hits[self._served] if self._served < len(self._hits) else []
        self._served += 1
        return hits[:k]


class RecordedIntentClassifier:
    """Returns the recorded intent decision of each turn, in order.

    A turn the classifier decided gets its label back on the classifier path.
    A turn the model decided gets a low-confidence prediction with the recorded
    confidence, so the re-run calls the scripted model, which returns the recorded
    output. A turn recorded with no confidence ran without a classifier and gets
    ``None``.
    """

    def __init__(self, entries: list[AuditEntry]) -> None:
        self._intents = [item.data or {} for item in entries if item.entry["kind"] == "intent"]
        self._served = 0

    def predict(self, text: str) -> IntentPrediction | None:
        if self._served >= len(self._intents):
            return None
        recorded = self._intents[self._served]
        self._served += 1
        if recorded.get("confidence") is None:
            return None
        return IntentPrediction(
            label=recorded["label"],
            confidence=float(recorded["confidence"]),
            path="classifier" if recorded.get("path") == "classifier" else "model",
        )


class MemoryAudit:
    """Collects the events of a dry run in memory, with the ``AuditLog.append`` signature."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._seen: set[str] = set()

    def append(self, thread_id: str, kind: str, data: Any = None, *, event_id: str, **fields: Any) -> int:
        if event_id not in self._seen:
            self._seen.add(event_id)
            fields.pop("customer_id", None)
            self.entries.append({"event_id": event_id, "kind": kind, "data": data, **fields})
        return len(self.entries)


def _model_script(entries: list[AuditEntry]) -> dict[str, list[Any]]:
    script: dict[str, list[Any]] = {"IntentOutput": [], "PlanOutput": [], "text": []}
    for item in entries:
        data = item.data or {}
        kind = item.entry["kind"]
        if kind == "intent" and data.get("path") != "classifier":
            # A turn the classifier decided never called the model, and the re-run's
            # RecordedIntentClassifier decides it again.
            output = data.get("model_output") or {"intent": data["label"], "entities": data.get("entities", {})}
            script["IntentOutput"].append(output)
        elif kind == "plan":
            script["PlanOutput"].extend(data.get("model_outputs", []))
        elif kind == "answer_sent":
            # The model's own text: the re-run passes it through the answer check again.
            script["text"].append(data.get("model_text", data.get("text", "")))
    return script


def _recorded_decisions(entries: list[AuditEntry]) -> dict[str, list[dict[str, Any]]]:
    decisions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in entries:
        if item.entry["kind"].startswith("decision_") and item.data:
            data = item.data
            value = {
                "decision": data["decision"],
                "reviewer": data["reviewer"],
                "role": data.get("role"),
                "reason": data.get("reason"),
                "message": data.get("message"),
                "arguments": data.get("arguments"),
                "decided_at": data.get("decided_at"),
            }
            decisions[data["action_id"]].append({k: v for k, v in value.items() if v is not None})
    return decisions


def normalize(value: Any) -> Any:
    """Return ``value`` without the keys in ``VOLATILE_KEYS``, for comparing two runs."""
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


@dataclass
class Divergence:
    """One place where the re-run departs from the recorded run."""

    event_id: str
    kind: str
    message: str
    recorded: Any = None
    replayed: Any = None


@dataclass
class ReplayReport:
    """The outcome of a dry run: the re-run's events and how they depart from the record."""

    thread_id: str
    policy_version: str
    fork_checkpoint_id: str | None
    events: list[dict[str, Any]] = field(default_factory=list)
    """Events of the re-run, normalised (no times, no run-scoped ids)."""
    divergences: list[Divergence] = field(default_factory=list)
    unrecorded_calls: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None
    """Reason the re-run stopped early, for example a reviewer decision that was never recorded."""
    answer: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def timeline(warden: Any, thread_id: str) -> list[dict[str, Any]]:
    """Return the thread's checkpoints, oldest first, each with the audit events its step produced.

    Each audit event carries the id of the checkpoint its node ran from, so
    an event is listed under that checkpoint. Events without a checkpoint id,
    or with one the saver no longer holds, go in a final row whose
    ``checkpoint_id`` is None.
    """
    config = {"configurable": {"thread_id": thread_id}}
    rows = []
    for snapshot in warden.graph.get_state_history(config):
        rows.append({
            "checkpoint_id": snapshot.config["configurable"]["checkpoint_id"],
            "parent_checkpoint_id": (snapshot.parent_config or {}).get("configurable", {}).get("checkpoint_id"),
            "step": snapshot.metadata.get("step"),
            "source": snapshot.metadata.get("source"),
            "next": list(snapshot.next),
            "created_at": snapshot.created_at,
            "events": [],
        })
    rows.reverse()
    by_id = {row["checkpoint_id"]: row for row in rows}
    orphans: list[dict[str, Any]] = []
    for item in warden.audit.read(thread_id):
        event = {
            "seq": item.entry["seq"],
            "kind": item.entry["kind"],
            "node": item.entry["node"],
            "turn": item.entry["turn"],
            "round": item.entry["round"],
            "at": item.entry["at"],
            "data": item.data,
            "erased": item.erased,
        }
        by_id.get(item.entry["checkpoint_id"], {"events": orphans})["events"].append(event)
    if orphans:
        rows.append({"checkpoint_id": None, "step": None, "source": None, "next": [], "created_at": None, "events": orphans})
    return rows


def render_timeline(rows: list[dict[str, Any]]) -> str:
    """Render a timeline as text: one line per checkpoint, one indented line per event."""
    lines = []
    for row in rows:
        next_nodes = ",".join(row["next"]) or "-"
        lines.append(f"checkpoint {row['checkpoint_id'] or '(none)'} step={row['step']} source={row['source']} next={next_nodes}")
        for event in row["events"]:
            lines.append(f"  #{event['seq']} {event['node'] or '-'} {event['kind']}: {_summary(event)}")
    return "\n".join(lines)


def _summary(event: dict[str, Any]) -> str:
    data = event["data"]
    if event["erased"]:
        return "(erased)"
    if not isinstance(data, dict):
        return str(data)
    kind = event["kind"]
    if kind in ("message_received", "answer_sent"):
        return repr(data.get("text", ""))[:120]
    if kind == "intent":
        return f"{data.get('label')} via {data.get('path')}"
    if kind == "retrieved":
        return ", ".join(f"{c['chunk_id']}({c['score']:.2f})" for c in data.get("chunks", [])) or "no chunks"
    if kind == "plan":
        steps = ", ".join(step["tool"] for step in data.get("steps", []))
        return f"revision {data.get('revision')}: {steps or 'no steps'}"
    if kind == "policy_verdict":
        return f"step {data.get('step_index')} {data.get('tool')} -> {data.get('verdict')} ({data.get('rule')})"
    if kind in ("tool_result", "execution_finished"):
        return f"{data.get('tool')} -> {data.get('status')}{': ' + data['error'] if data.get('error') else ''}"
    if kind.startswith("decision_"):
        return f"{data.get('action_id')} by {data.get('reviewer')} ({data.get('role')})"
    return ", ".join(f"{k}={v}" for k, v in data.items() if isinstance(v, (str, int, float)))[:120]


def dry_run(
    warden: Any,
    thread_id: str,
    *,
    policy_config: PolicyConfig | None = None,
    fork_checkpoint_id: str | None = None,
) -> ReplayReport:
    """Re-execute a thread, or fork it from one checkpoint, on recorded outputs only.

    Nothing is written to the database, the Redis checkpoints or the audit
    log: the graph runs on an ``InMemorySaver`` with a ``RecordedStore``, a
    ``RecordedChatModel``, a ``RecordedIndex`` and no ledger or journal.
    ``policy_config`` (default: the runtime's) decides the re-run's policy.

    Raises ``ReplayError`` when the thread has no audit log, its content was
    erased, or the fork checkpoint does not exist.
    """
    entries = warden.audit.read(thread_id)
    if not entries:
        raise ReplayError(f"thread {thread_id!r} has no audit log to replay")
    if any(item.erased for item in entries):
        raise ReplayError(f"thread {thread_id!r} had its content erased; it can be verified but not replayed")
    # The product's serializer, so a dry run loads state as strictly as the Redis saver.
    saver = InMemorySaver(serde=CheckpointSerializer())
    graph = build_graph(saver)
    config: dict[str, Any] = {"configurable": {"thread_id": thread_id}}
    policy = PolicyEngine(None, warden.context.tools, policy_config or warden.context.policy.config)
    report = ReplayReport(thread_id, policy.version, fork_checkpoint_id)

    inputs: list[Any] = []
    if fork_checkpoint_id is not None:
        # The fork point is rebuilt by replaying the recorded run in memory
        # with the recorded policy, rather than copied from Redis, so the fork
        # starts from the same state without touching the saver.
        start = _replay_to(warden, graph, thread_id, entries, fork_checkpoint_id)
        config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": start}}
        inputs.append(None)
        # LangGraph's checkpoint ids are UUIDv6, which sort by creation time, so
        # the steps after the fork ran from the fork checkpoint or a later one.
        entries = [item for item in entries if (item.entry["checkpoint_id"] or "") >= fork_checkpoint_id]
    store = RecordedStore(entries)
    audit = MemoryAudit()
    context = _recorded_context(warden, entries, store, dataclasses.replace(policy, store=store), audit)
    decisions = _recorded_decisions(entries)
    inputs += [{"messages": [("user", item.data["text"])]} for item in entries if item.entry["kind"] == "message_received"]
    try:
        for graph_input in inputs:
            if not _drive(graph, config, context, graph_input, decisions, report):
                break
            config = {"configurable": {"thread_id": thread_id}}
    except ReplayError as error:
        report.stopped = str(error)

    report.events = [normalize(event) for event in audit.entries]
    report.unrecorded_calls = [call for call in store.calls if not call["recorded"]]
    report.answer = graph.get_state({"configurable": {"thread_id": thread_id}}).values.get("answer", "")
    report.divergences = _compare(entries, audit.entries, policy.version)
    logger.info(
        "dry run finished thread_id=%s events=%d divergences=%d stopped=%s",
        thread_id, len(report.events), len(report.divergences), bool(report.stopped),
    )
    return report


def _recorded_context(warden: Any, entries: list[AuditEntry], store: RecordedStore, policy: Any, audit: Any) -> Any:
    return dataclasses.replace(
        warden.context,
        store=store,
        chat_model=RecordedChatModel(script=_model_script(entries)),
        policy=policy,
        index=RecordedIndex(entries),
        intent_classifier=RecordedIntentClassifier(entries),
        ledger=None,
        journal=None,
        audit=audit,
    )


def _replay_to(warden: Any, graph: Any, thread_id: str, entries: list[AuditEntry], checkpoint_id: str) -> str:
    """Replay the recorded run in ``graph`` and return the in-memory checkpoint matching ``checkpoint_id``.

    Checkpoints are matched by step number. Raises ``ReplayError`` when the
    Redis saver has no such checkpoint or the replay did not reach it with the
    same next nodes.
    """
    source = warden.graph.get_state({"configurable": {"thread_id": thread_id, "checkpoint_id": checkpoint_id}})
    if not source.values and not source.next:
        raise ReplayError(f"checkpoint {checkpoint_id!r} of thread {thread_id!r} not found; list them with `warden history`")
    step = source.metadata.get("step")
    store = RecordedStore(entries)
    context = _recorded_context(warden, entries, store, dataclasses.replace(warden.context.policy, store=store), MemoryAudit())
    decisions = _recorded_decisions(entries)
    report = ReplayReport(thread_id, warden.context.policy.version, None)
    config = {"configurable": {"thread_id": thread_id}}
    for item in entries:
        if item.entry["kind"] == "message_received":
            if not _drive(graph, config, context, {"messages": [("user", item.data["text"])]}, decisions, report):
                break
    for snapshot in graph.get_state_history(config):
        if snapshot.metadata.get("step") == step and tuple(snapshot.next) == tuple(source.next):
            return snapshot.config["configurable"]["checkpoint_id"]
    raise ReplayError(
        f"replaying thread {thread_id!r} did not reach a checkpoint like {checkpoint_id!r} "
        f"(step {step}, next {list(source.next)}); the recorded run cannot be rebuilt up to it"
    )


def _drive(
    graph: Any, config: dict[str, Any], context: Any, graph_input: Any,
    decisions: dict[str, list[dict[str, Any]]], report: ReplayReport,
) -> bool:
    """Run one input to the end, resuming each approval with the recorded decisions.

    Returns False, with ``report.stopped`` set, when an approval has no
    recorded decision or the recorded one is refused.
    """
    snapshot = graph.get_state(config)
    if graph_input is None and not snapshot.next:
        return True
    if graph_input is not None or not snapshot.interrupts:
        graph.invoke(graph_input, config, context=context)
    for _resume in range(_MAX_RESUMES):
        snapshot = graph.get_state(config)
        requests = [
            item.value for item in snapshot.interrupts
            if isinstance(item.value, dict) and item.value.get("type") == APPROVAL_INTERRUPT_TYPE
        ]
        if not requests:
            return True
        request = requests[0]
        if request.get("error"):
            report.stopped = f"a recorded decision was refused on replay: {request['error']}"
            return False
        waiting = request.get("awaiting_second_approval") or [action["action_id"] for action in request["actions"]]
        value = {}
        for action_id in waiting:
            queue = decisions.get(action_id)
            if not queue:
                report.stopped = f"action {action_id} would wait for a reviewer: no decision on it was recorded"
                return False
            value[action_id] = queue.pop(0)
        graph.invoke(Command(resume=value), config, context=context)
    report.stopped = f"more than {_MAX_RESUMES} approval resumes in one turn"
    return False


def _compare(entries: list[AuditEntry], replayed: list[dict[str, Any]], policy_version: str) -> list[Divergence]:
    """List the policy verdicts, replies and steps that differ between the record and the re-run."""
    recorded = {
        item.entry["event_id"]: {"kind": item.entry["kind"], "data": item.data}
        for item in entries
        if not item.entry["event_id"].startswith("ledger/")
    }
    rerun = {event["event_id"]: event for event in replayed}
    divergences = []
    for event_id, before in recorded.items():
        after = rerun.get(event_id)
        if after is None:
            divergences.append(Divergence(event_id, before["kind"], f"{event_id} happened in the recorded run but not in the re-run", normalize(before["data"])))
            continue
        if normalize(before["data"]) == normalize(after["data"]):
            continue
        if before["kind"] == "policy_verdict":
            old, new = before["data"], after["data"]
            if (old["verdict"], old["rule"]) == (new["verdict"], new["rule"]):
                continue
            message = (
                f"policy {policy_version} would now {_verb(new['verdict'])} step {old['step_index'] + 1} "
                f"({old['tool']}): rule {new['rule']}, recorded {old['verdict']} by rule {old['rule']}"
            )
            divergences.append(Divergence(event_id, "policy_verdict", message, _verdict(old), _verdict(new)))
        else:
            divergences.append(Divergence(
                event_id, before["kind"], f"{event_id} differs in the re-run",
                normalize(before["data"]), normalize(after["data"]),
            ))
    for event_id, after in rerun.items():
        if event_id not in recorded:
            divergences.append(Divergence(event_id, after["kind"], f"{event_id} happens only in the re-run", None, normalize(after["data"])))
    return divergences


def _verb(verdict: str) -> str:
    return {"deny": "deny", "allow": "allow", "needs_approval": "hold for approval"}.get(verdict, verdict)


def _verdict(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data.get(key) for key in ("verdict", "rule", "reason", "approvals_required")}
