"""The runtime a host embeds: Redis, the store, retrieval, the model and the graph, wired.

``Warden.open(settings)`` starts (or connects to) Redis, builds the example
database and the knowledge index when they are missing, and compiles the graph
with the Redis checkpoint saver. ``send`` runs one customer turn, ``decide``
resumes a paused thread with reviewer decisions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import redis
from langchain_core.messages import HumanMessage
from langgraph.types import Command

from graphs.context import SupportContext
from graphs.support import build_graph
from tools.retail import RETAIL_TOOLS, RetailStore, build_database
from warden.actions import REVIEWER_DECISIONS, Decision, PendingAction
from warden.approvals import APPROVAL_INTERRUPT_TYPE, validate_decisions
from warden.audit import AuditLog, VerifyReport, audit_step
from warden.checkpoint import RedisSaver
from warden.errors import (
    ApprovalConflictError,
    ApprovalExpiredError,
    ConfigurationError,
    ResumeError,
    ThreadStateError,
)
from warden.journal import EffectJournal
from warden.ledger import TERMINAL_STATES, ApprovalLedger, ApprovalRecord, ApprovalRules
from warden.models import load_chat_model
from warden.policy import PolicyConfig, PolicyEngine
from warden.redaction import redact_text
from warden.redis_server import RedisServer
from warden.run_lock import run_lock
from warden.settings import Settings, message_length_error

logger = logging.getLogger(__name__)

TokenCallback = Callable[[str], None]
ChunkCallback = Callable[[Any, dict[str, Any]], None]
"""Receives every ``(message, metadata)`` pair of the graph's message stream."""


@contextlib.contextmanager
def open_redis(settings: Settings) -> Iterator[str]:
    """Yield the URL of ``settings.redis_url``, or of the embedded server.

    The embedded server lives in ``data_dir/redis`` with append-only
    persistence. A process that finds a live server for that directory connects
    to it; otherwise it starts one and stops it on exit. A file lock makes the
    check-then-start step safe between processes.
    """
    if settings.redis_url:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
        try:
            client.ping()
        except redis.exceptions.ConnectionError as error:
            raise ConfigurationError(f"cannot reach Redis at REDIS_URL ({error}); check the server") from error
        client.close()
        yield settings.redis_url
        return

    redis_dir = settings.data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    state_file = redis_dir / "server.json"
    server: RedisServer | None = None
    with (redis_dir / "server.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        port = _live_embedded_port(state_file)
        if port is None:
            server = RedisServer(redis_dir, appendonly=True).start()
            port = server.port
            state_file.write_text(json.dumps({"pid": os.getpid(), "port": port}))
        fcntl.flock(lock, fcntl.LOCK_UN)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        # The last process to leave stops the server, whichever started it: a
        # process that sees other clients connected leaves the server running.
        with (redis_dir / "server.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            others = _other_clients(port)
            if others:
                logger.info("embedded redis left running port=%s other_clients=%d", port, others)
                if server is not None:
                    _DETACHED_SERVERS.append(server)
            else:
                # A server this process started and left running earlier is
                # stopped through its handle, so the child process is reaped.
                detached = [s for s in _DETACHED_SERVERS if s.port == port]
                owned = server or (detached[0] if detached else None)
                if owned is not None:
                    owned.stop()
                    if owned in _DETACHED_SERVERS:
                        _DETACHED_SERVERS.remove(owned)
                else:
                    _shutdown_embedded(port)
                state_file.unlink(missing_ok=True)
            fcntl.flock(lock, fcntl.LOCK_UN)


# Servers this process started and left running for other processes; kept so
# the child-process handles stay alive until the interpreter exits.
_DETACHED_SERVERS: list[RedisServer] = []


def _other_clients(port: int) -> int:
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        count = len(client.client_list()) - 1
        client.close()
        return max(count, 0)
    except redis.exceptions.ConnectionError:
        return 0


def _shutdown_embedded(port: int) -> None:
    try:
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=10).shutdown(nosave=False)
    except redis.exceptions.ConnectionError:
        # SHUTDOWN closes the connection before it replies.
        pass


def _live_embedded_port(state_file: Path) -> int | None:
    if not state_file.exists():
        return None
    try:
        port = int(json.loads(state_file.read_text())["port"])
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
        client.ping()
        client.close()
        return port
    except (ValueError, KeyError, redis.exceptions.ConnectionError):
        return None


def open_store(settings: Settings) -> RetailStore:
    """Return the retail store, building the database from the example domain if missing."""
    if not settings.db_path.exists():
        source = settings.domain_dir / "db.json"
        if not source.exists():
            raise ConfigurationError(f"database {str(settings.db_path)!r} is missing and so is {str(source)!r}")
        settings.db_path.parent.mkdir(parents=True, exist_ok=True)
        build_database(source, settings.db_path)
        logger.info("database built path=%s", settings.db_path)
    return RetailStore(settings.db_path)


def open_index(settings: Settings, *, progress: bool = False) -> Any:
    """Return the knowledge index, ingesting ``settings.kb_dir`` first if it is missing."""
    from ingestion.embedder import load_default_embedder  # noqa: PLC0415 - loads torch
    from ingestion.index import KnowledgeIndex, build_index  # noqa: PLC0415

    embedder = load_default_embedder(settings.model_cache_dir)
    if not (settings.index_dir / "manifest.json").exists():
        build_index(settings.kb_dir, settings.index_dir, embedder, progress=progress)
    reranker = None
    if settings.reranker_dir is not None:
        from ingestion.reranking import CrossEncoderReranker  # noqa: PLC0415

        try:
            reranker = CrossEncoderReranker(settings.reranker_dir)
        except FileNotFoundError as error:
            raise ConfigurationError(f"WARDEN_RERANKER_DIR: {error}") from None
    return KnowledgeIndex.load(settings.index_dir, embedder, reranker=reranker)


def open_intent_classifier(settings: Settings) -> Any:
    """Return the intent classifier, training it from the domain's examples if missing.

    The trained model lives in ``data_dir/intent``; it is retrained when the
    examples file changes, because its checksum is part of the model.
    """
    from ingestion.embedder import load_default_embedder  # noqa: PLC0415 - loads torch
    from warden.intent import IntentClassifier, read_examples, training_checksum  # noqa: PLC0415

    embedder = load_default_embedder(settings.model_cache_dir)
    examples = settings.domain_dir / "intents.jsonl"
    model_dir = settings.data_dir / "intent"
    texts, labels = read_examples(examples)
    try:
        classifier = IntentClassifier.load(model_dir, embedder)
        if classifier.metadata.get("training_data_sha256") == training_checksum(texts, labels):
            return classifier
        logger.info("intent examples changed, retraining path=%s", examples)
    except ValueError as error:
        logger.info("training the intent classifier: %s", error)
    classifier = IntentClassifier.train(texts, labels, embedder)
    classifier.save(model_dir)
    return classifier


def build_context(settings: Settings, store: RetailStore, *, chat_model: Any = None, index: Any = None) -> SupportContext:
    """Return the graph's services for ``settings``; pass ``chat_model`` to inject one.

    The policy grants the scopes configured for ``settings.tenant`` and
    ``settings.channel``. The ledger and the journal need Redis, so the
    runtime adds them when it connects.
    """
    config = PolicyConfig(approval_threshold=settings.approval_threshold)
    granted = settings.granted_scopes()
    if granted is not None:
        config = dataclasses.replace(config, granted_scopes=granted)
    return SupportContext(
        store=store,
        tools=RETAIL_TOOLS,
        chat_model=chat_model if chat_model is not None else load_chat_model(settings),
        policy=PolicyEngine(store, RETAIL_TOOLS, config),
        index=index,
        retrieval_k=settings.retrieval_k,
        tenant=settings.tenant,
        channel=settings.channel,
        approval_rules=ApprovalRules(
            reviewers=dict(settings.reviewers),
            roles_by_risk=dict(settings.review_roles),
            deadline_seconds=dict(settings.approval_deadlines),
        ),
    )


def build_default_context() -> SupportContext:
    """Return services built from the environment, for runs that inject none."""
    from warden.service.chat import chat_model_from_settings  # noqa: PLC0415 - handles scripted:<file>

    settings = Settings.from_env()
    chat_model = chat_model_from_settings(settings)
    context = build_context(settings, open_store(settings), chat_model=chat_model, index=open_index(settings))
    context = dataclasses.replace(context, intent_classifier=open_intent_classifier(settings))
    # The dev server's checkpointer has already started or found the Redis;
    # the ledger and the journal use the same one.
    redis_url = settings.redis_url
    if redis_url is None:
        port = _live_embedded_port(settings.data_dir / "redis" / "server.json")
        redis_url = f"redis://127.0.0.1:{port}/0" if port is not None else None
    if redis_url is None:
        logger.warning("no Redis found for the default context; approvals live only in checkpoints")
        return context
    client = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
    audit = AuditLog(client, settings.tenant, ttl_seconds=settings.audit_ttl_seconds)
    return dataclasses.replace(
        context,
        ledger=ApprovalLedger(client, settings.tenant, audit=audit),
        journal=EffectJournal(client, settings.tenant),
        audit=audit,
    )


@dataclass
class TurnOutcome:
    """Result of a turn or a resume: the answer, or the actions awaiting approval."""

    status: Literal["answered", "awaiting_approval"]
    answer: str = ""
    pending: list[PendingAction] = field(default_factory=list)
    interrupt: dict[str, Any] | None = None


class Warden:
    """A compiled support graph with its services and Redis checkpointing."""

    def __init__(self, settings: Settings, context: SupportContext, redis_url: str) -> None:
        self.settings = settings
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
        self.audit = AuditLog(self.redis, settings.tenant, ttl_seconds=settings.audit_ttl_seconds)
        self.ledger = ApprovalLedger(self.redis, settings.tenant, audit=self.audit)
        self.journal = EffectJournal(self.redis, settings.tenant)
        self.context = dataclasses.replace(context, ledger=self.ledger, journal=self.journal, audit=self.audit)
        self.saver = RedisSaver.from_url(
            redis_url, ttl_seconds=settings.checkpoint_ttl_seconds, key_prefix=settings.checkpoint_key_prefix
        )
        self.graph = build_graph(self.saver)
        self._pending_key = f"warden:{settings.tenant}:pending_threads"

    @classmethod
    @contextlib.contextmanager
    def open(
        cls,
        settings: Settings | None = None,
        *,
        chat_model: Any = None,
        index: Any = "default",
        intent_classifier: Any = "default",
    ) -> Iterator["Warden"]:
        """Yield a ready runtime; Redis started here is stopped on exit.

        ``index="default"`` loads (or builds) the knowledge index from the
        settings. ``intent_classifier="default"`` loads (or trains) the intent
        classifier only when the runtime also picks the chat model; a host that
        injects ``chat_model`` passes its own classifier, or none.
        """
        settings = settings or Settings.from_env()
        store = open_store(settings)
        if index == "default":
            index = open_index(settings)
        if intent_classifier == "default":
            intent_classifier = open_intent_classifier(settings) if chat_model is None else None
        context = build_context(settings, store, chat_model=chat_model, index=index)
        context = dataclasses.replace(context, intent_classifier=intent_classifier)
        with open_redis(settings) as redis_url:
            warden = cls(settings, context, redis_url)
            try:
                yield warden
            finally:
                warden.close()

    def close(self) -> None:
        """Close the runtime's Redis connections."""
        self.redis.close()
        if self.saver.client is not None:
            self.saver.client.close()

    def _config(self, thread_id: str) -> dict[str, Any]:
        if not thread_id or len(thread_id) > 200:
            raise ValueError(f"thread id {thread_id!r} must be 1 to 200 characters")
        return {"configurable": {"thread_id": thread_id}}

    def current_interrupt(self, thread_id: str) -> dict[str, Any] | None:
        """Return the approval request a thread is paused on, or None."""
        state = self.graph.get_state(self._config(thread_id))
        for item in state.interrupts:
            if isinstance(item.value, dict) and item.value.get("type") == APPROVAL_INTERRUPT_TYPE:
                return item.value
        return None

    def _run(
        self,
        graph_input: Any,
        thread_id: str,
        on_token: TokenCallback | None,
        on_chunk: ChunkCallback | None = None,
    ) -> TurnOutcome:
        config = self._config(thread_id)
        for mode, payload in self.graph.stream(
            graph_input, config, context=self.context, stream_mode=["messages", "custom"], durability="sync"
        ):
            if mode == "custom":
                # Only the answer is meant for the customer, and only after the
                # answer check: the respond node writes checked text as custom events.
                if on_token and isinstance(payload, dict) and payload.get("answer"):
                    on_token(payload["answer"])
                continue
            if on_chunk is not None:
                on_chunk(*payload)
        request = self.current_interrupt(thread_id)
        if request is not None:
            self.redis.sadd(self._pending_key, thread_id)
            pending = [PendingAction.model_validate(a) for a in request["actions"]]
            return TurnOutcome(status="awaiting_approval", pending=pending, interrupt=request)
        self.redis.srem(self._pending_key, thread_id)
        values = self.graph.get_state(config).values
        return TurnOutcome(status="answered", answer=values.get("answer", ""))

    @contextlib.contextmanager
    def _thread_lock(self, thread_id: str) -> Iterator[None]:
        # One run per thread at a time, across processes: concurrent resumes of
        # one checkpoint would both execute what they resumed.
        with run_lock(
            self.redis,
            f"warden:{self.settings.tenant}:thread_lock:{thread_id}",
            lease_seconds=self.settings.run_lock_seconds,
            subject=f"thread {thread_id!r}",
        ):
            yield

    def send(
        self,
        thread_id: str,
        text: str,
        *,
        on_token: TokenCallback | None = None,
        on_chunk: ChunkCallback | None = None,
    ) -> TurnOutcome:
        """Run one customer message through the pipeline on ``thread_id``.

        Raises ``ThreadStateError`` while the thread waits for a reviewer: a new
        message is refused rather than silently dropping the pending actions.
        Call ``cancel_pending`` first to withdraw them.

        It is also raised when an earlier run stopped part-way because its
        process died, because a new message would abandon that run's unsent
        reply. Call ``resume`` first. A run that recorded an error (a failed
        node, a disconnected stream) does not block the next message.

        Raises ``ValueError`` when ``text`` is empty or longer than
        ``MAX_CUSTOMER_MESSAGE_CHARS`` characters.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError("customer message must be a non-empty string")
        error = message_length_error(text)
        if error:
            raise ValueError(error)
        with self._thread_lock(thread_id):
            request = self.current_interrupt(thread_id)
            if request is not None:
                ids = [a["action_id"] for a in request["actions"]]
                raise ThreadStateError(
                    f"thread {thread_id!r} is waiting for approval of {ids}; decide them "
                    f"(`warden approve|reject|edit|respond {thread_id} ACTION_ID --reviewer NAME`) "
                    "or withdraw them with Warden.cancel_pending before sending another message"
                )
            snapshot = self.graph.get_state(self._config(thread_id))
            # A run that failed or whose client disconnected recorded its error,
            # and the next message starts over. A run with no error recorded
            # stopped because its process died.
            unfinished = snapshot.next if not any(task.error for task in snapshot.tasks) else ()
            if unfinished:
                raise ThreadStateError(
                    f"thread {thread_id!r} has an unfinished run stopped before {list(unfinished)}; "
                    f"finish it with `warden resume {thread_id}` (Warden.resume) before sending another message"
                )
            # Card numbers, tokens and keys are redacted before they enter the
            # state, so no checkpoint, audit entry or prompt contains them.
            return self._run({"messages": [HumanMessage(redact_text(text))]}, thread_id, on_token, on_chunk)

    def decide(
        self,
        thread_id: str,
        decisions: dict[str, Any],
        *,
        on_token: TokenCallback | None = None,
        on_chunk: ChunkCallback | None = None,
    ) -> TurnOutcome:
        """Resume a paused thread with reviewer decisions keyed by action id.

        The decisions are validated against the pending request (reviewer
        role, separation of duties, edits) and recorded in the ledger with a
        compare-and-set before the graph resumes.

        Raises:
            ApprovalConflictError: an action was already decided; the message
                names who decided it.
            ApprovalExpiredError: the request passed its deadline. It was
                closed as expired, and the thread's stored answer states that
                the actions were not done.
            ResumeError: the decisions are invalid; the thread stays paused.
            ThreadStateError: the thread has no pending approval.
        """
        decisions = _reviewer_decisions(decisions)
        with self._thread_lock(thread_id):
            self._raise_if_decided(decisions)
            request = self.current_interrupt(thread_id)
            if request is None:
                raise ThreadStateError(f"thread {thread_id!r} has no pending approval")
            expired = [r for r in self._waiting_records(request) if r.expires_at <= datetime.now(timezone.utc)]
            if expired:
                self._close_request(thread_id, request, "expire", reviewer="deadline", reason="the approval deadline passed")
                raise ApprovalExpiredError(
                    f"approval of {[r.action_id for r in expired]} expired at "
                    f"{min(r.expires_at for r in expired).isoformat()}, so the actions will not run. "
                    "The outcome is stored in the thread's answer, which is not sent to anyone"
                )
            pending = [PendingAction.model_validate(a) for a in request["actions"]]
            # The ledger keeps every decision with its kind, so an edit is known as one.
            collected = {}
            for action_id, names in (request.get("approved_by") or {}).items():
                record = self.ledger.get(action_id)
                collected[action_id] = (
                    list(record.decisions) if record is not None
                    else [Decision(decision="approve", reviewer=name) for name in names]
                )
            # Actions decided in an earlier step of a two-person round are no longer waiting.
            waiting = request.get("awaiting_second_approval")
            pending_waiting = [a for a in pending if a.action_id in waiting] if waiting else pending
            state = self.graph.get_state(self._config(thread_id)).values
            customer = state.get("customer")
            checked = validate_decisions(
                decisions, pending_waiting, self.context, customer["user_id"] if customer else None, collected
            )
            with audit_step(**self._paused_step(thread_id, request)):
                self.ledger.decide(checked)
            value = {action_id: decision.model_dump(mode="json") for action_id, decision in checked.items()}
            return self._run(Command(resume=value), thread_id, on_token, on_chunk)

    def _paused_step(self, thread_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """Return the audit step of a thread paused in ``request_approval``: its checkpoint and turn."""
        snapshot = self.graph.get_state(self._config(thread_id))
        return {
            "node": "request_approval",
            "turn": snapshot.values.get("turn"),
            "round": request.get("round"),
            "checkpoint_id": snapshot.config["configurable"].get("checkpoint_id"),
            "checkpoint_ns": snapshot.config["configurable"].get("checkpoint_ns", ""),
        }

    def _raise_if_decided(self, decisions: Any) -> None:
        if not isinstance(decisions, dict):
            return
        for action_id in decisions:
            record = self.ledger.get(str(action_id))
            if record is not None and record.state in TERMINAL_STATES:
                who = ", ".join(record.reviewers) or "nobody"
                raise ApprovalConflictError(
                    f"action {action_id!r} was already decided ({record.state}) by {who}",
                    action_id=str(action_id), state=record.state, reviewers=record.reviewers,
                )

    def _waiting_records(self, request: dict[str, Any]) -> list[ApprovalRecord]:
        waiting = request.get("awaiting_second_approval") or [a["action_id"] for a in request["actions"]]
        records = [self.ledger.get(action_id) for action_id in waiting]
        return [record for record in records if record is not None and record.state == "pending"]

    def _close_request(
        self, thread_id: str, request: dict[str, Any], kind: Literal["expire", "cancel"], *, reviewer: str, reason: str
    ) -> TurnOutcome:
        """Close every waiting action of ``request`` and resume, so the thread's answer records the outcome."""
        waiting = request.get("awaiting_second_approval") or [a["action_id"] for a in request["actions"]]
        with audit_step(**self._paused_step(thread_id, request)):
            self.ledger.close(waiting, kind, reviewer=reviewer, reason=reason)
        value = {}
        for action_id in waiting:
            record = self.ledger.get(action_id)
            final = record.final_decision if record is not None else None
            if final is None:
                final = Decision(decision=kind, reviewer=reviewer, reason=reason)
            value[action_id] = final.model_dump(mode="json")
        logger.info("approval request closed thread_id=%s kind=%s actions=%s", thread_id, kind, ",".join(waiting))
        return self._run(Command(resume=value), thread_id, None)

    def cancel_pending(self, thread_id: str, reviewer: str = "customer") -> TurnOutcome:
        """Close every pending action of a thread as cancelled, then let it answer."""
        with self._thread_lock(thread_id):
            request = self.current_interrupt(thread_id)
            if request is None:
                raise ThreadStateError(f"thread {thread_id!r} has no pending approval")
            return self._close_request(
                thread_id, request, "cancel", reviewer=reviewer, reason="withdrawn before a reviewer decided"
            )

    def expire_due(self, now: datetime | None = None) -> list[str]:
        """Close every pending action past its deadline and return the threads resumed.

        Each affected thread is resumed with an ``expired`` outcome, so its
        answer in the thread records that the request was not carried out.
        """
        threads = []
        for record in self.ledger.due(now):
            if record.thread_id in threads:
                continue
            with self._thread_lock(record.thread_id):
                request = self.current_interrupt(record.thread_id)
                ids = [a["action_id"] for a in request["actions"]] if request else []
                if record.action_id not in ids:
                    # The thread moved on without deciding it; close the orphan record.
                    self.ledger.close([record.action_id], "expire", reviewer="deadline")
                    continue
                self._close_request(
                    record.thread_id, request, "expire", reviewer="deadline", reason="the approval deadline passed"
                )
            threads.append(record.thread_id)
        return threads

    def list_pending(self, *, role: str | None = None, min_age_seconds: float = 0.0) -> list[ApprovalRecord]:
        """Return this tenant's pending approvals, oldest first, after expiring the overdue ones.

        ``role`` keeps only what that reviewer role may decide.
        """
        self.expire_due()
        return self.ledger.list_pending(role=role, rules=self.context.approval_rules, min_age_seconds=min_age_seconds)

    def show_action(self, action_id: str) -> ApprovalRecord:
        """Return one approval record with its full context; raise ``KeyError`` if unknown."""
        record = self.ledger.get(action_id)
        if record is None:
            raise KeyError(f"no approval record for action {action_id!r}")
        return record

    def resume(self, thread_id: str) -> TurnOutcome:
        """Finish a run that stopped between nodes, for example after its process was killed.

        The effect journal makes the re-run execution node return recorded
        outcomes instead of acting again. Raises ``ThreadStateError`` when the
        thread is paused for approval or has nothing left to run.
        """
        with self._thread_lock(thread_id):
            if self.current_interrupt(thread_id) is not None:
                raise ThreadStateError(f"thread {thread_id!r} is waiting for approval; use decide")
            if not self.graph.get_state(self._config(thread_id)).next:
                raise ThreadStateError(f"thread {thread_id!r} has no unfinished run")
            return self._run(None, thread_id, None)

    def pending_threads(self) -> list[str]:
        """Return the threads of this tenant that wait for a reviewer."""
        return sorted(member.decode() for member in self.redis.smembers(self._pending_key))

    def history(self, thread_id: str) -> list[dict[str, Any]]:
        """Return every checkpoint of a thread, oldest first, as plain dicts."""
        rows = []
        for snapshot in self.graph.get_state_history(self._config(thread_id)):
            rows.append({
                "checkpoint_id": snapshot.config["configurable"]["checkpoint_id"],
                "step": snapshot.metadata.get("step"),
                "source": snapshot.metadata.get("source"),
                "next": list(snapshot.next),
                "created_at": snapshot.created_at,
                "messages": len(snapshot.values.get("messages", [])),
                "interrupts": [i.value.get("round") for i in snapshot.interrupts if isinstance(i.value, dict)],
            })
        return list(reversed(rows))

    def verify_audit(self, thread_id: str | None = None) -> list[VerifyReport]:
        """Verify the audit chain of one thread, or of every thread of the tenant when None."""
        if thread_id is None:
            return self.audit.verify_all()
        return [self.audit.verify(thread_id)]

    def forget_customer(self, user_id: str, reason: str = "erasure request") -> dict[str, int]:
        """Erase a customer's content from the audit log, keeping a verifiable tombstone chain.

        Returns erased entries per thread. Checkpoints are not touched: delete
        the threads with ``saver.delete_thread`` to remove the conversation state too.
        """
        return self.audit.forget_customer(user_id, reason)

    def messages(self, thread_id: str) -> list[Any]:
        return list(self.graph.get_state(self._config(thread_id)).values.get("messages", []))


def _reviewer_decisions(decisions: Any) -> Any:
    """Return ``decisions`` with reviewer text redacted; reject kinds only the runtime may use.

    ``cancel`` and ``expire`` close actions on the runtime's behalf (a customer
    withdrawing, a deadline passing); a reviewer never sends them.
    """
    if not isinstance(decisions, dict):
        return decisions
    cleaned: dict[str, Any] = {}
    for action_id, decision in decisions.items():
        if isinstance(decision, dict):
            kind = decision.get("decision")
            if kind not in REVIEWER_DECISIONS:
                raise ResumeError(
                    f"invalid decision {kind!r} for {action_id!r}; a reviewer may send one of "
                    f"{list(REVIEWER_DECISIONS)}"
                )
            decision = {
                key: redact_text(value) if key in ("reason", "message") and isinstance(value, str) else value
                for key, value in decision.items()
            }
        cleaned[action_id] = decision
    return cleaned


def parse_decision_json(text: str) -> dict[str, Any]:
    """Parse a JSON decisions mapping typed by a reviewer; raise ``ResumeError`` if malformed."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ResumeError(f"decisions are not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ResumeError("decisions must be a JSON object keyed by action id")
    return value
