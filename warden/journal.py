"""Effect journal: each approved tool call runs once, across node re-runs, retries and crashes.

LangGraph re-runs an interrupted or failed node from its start, so the
execution node may reach the same action several times. The journal keeps one
Redis entry per (thread, action id) that moves

    intended -> running -> done(result) | failed(error) | unknown(error)

A re-run finds a closed entry and returns its recorded outcome without calling
the tool. An entry left ``running`` by a crash is recovered by calling the
tool again with the same idempotency key. A de-duplicating store (such as
``RetailStore``) then returns the stored result instead of acting twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import redis
from pydantic import BaseModel

from tools.base import RetryableToolError, ToolError
from warden.actions import canonical_json

logger = logging.getLogger(__name__)

EntryState = Literal["intended", "running", "done", "failed", "unknown"]
CLOSED_STATES = frozenset({"done", "failed", "unknown"})
UNKNOWN_OUTCOME = (
    "the call did not confirm whether it took effect; do not repeat it, "
    "a reviewer will check the record and tell the customer"
)
TransitionHook = Callable[[str, "JournalEntry"], None]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class JournalEntry(BaseModel):
    """The recorded progress and outcome of one action's tool call."""

    thread_id: str
    action_id: str
    tool: str
    arguments_json: str
    idempotency_key: str | None
    state: EntryState
    attempts: int = 0
    result: Any = None
    error: str | None = None
    updated_at: str
    recovered: bool = False
    """Whether the outcome was settled after a crash left the entry ``running``."""


@dataclass
class RetryPolicy:
    """Bounded retries with exponential backoff for failures a tool marks retryable."""

    max_attempts: int = 3
    backoff_seconds: float = 0.05
    """Delay before the second attempt; each later delay doubles."""
    retryable: tuple[type[BaseException], ...] = (RetryableToolError, TimeoutError)

    def delay(self, attempt: int) -> float:
        return self.backoff_seconds * (2 ** (attempt - 1))


def call_with_retries(call: Callable[[], Any], retry: RetryPolicy, *, label: str) -> Any:
    """Call a read ``call`` and retry it on retryable failures, with backoff, at most ``retry.max_attempts`` times.

    Only for calls without side effects: nothing is journaled. The last
    failure propagates. ``label`` names the call in the retry log lines.
    """
    for attempt in range(1, retry.max_attempts):
        try:
            return call()
        except retry.retryable as error:
            delay = retry.delay(attempt)
            logger.warning("read failed, retrying call=%s attempt=%d delay_s=%.2f error=%s", label, attempt, delay, error)
            time.sleep(delay)
    return call()


class EffectJournal:
    """Effect journal of one tenant in Redis, key ``warden:{tenant}:journal:{thread}:{action}``.

    ``hook``, when set, is called with the point name (``intended``,
    ``running``, ``returned``, ``closed``) and the entry after each state
    change. Crash tests use it to kill the process at a chosen point.
    """

    def __init__(
        self,
        client: redis.Redis,
        tenant: str = "default",
        *,
        retry: RetryPolicy | None = None,
        deduplicating_store: bool = True,
        hook: TransitionHook | None = None,
    ) -> None:
        self.client = client
        self.tenant = tenant
        self.retry = retry or RetryPolicy()
        self.deduplicating_store = deduplicating_store
        """Whether the store returns the stored result for a repeated idempotency key."""
        self.hook = hook

    def _key(self, thread_id: str, action_id: str) -> str:
        return f"warden:{self.tenant}:journal:{thread_id}:{action_id}"

    def get(self, thread_id: str, action_id: str) -> JournalEntry | None:
        """Return the entry of one action, or None when the action never started."""
        raw = self.client.get(self._key(thread_id, action_id))
        return JournalEntry.model_validate_json(raw) if raw is not None else None

    def _save(self, entry: JournalEntry, point: str) -> JournalEntry:
        entry = entry.model_copy(update={"updated_at": _now()})
        self.client.set(self._key(entry.thread_id, entry.action_id), entry.model_dump_json())
        if self.hook is not None:
            self.hook(point, entry)
        return entry

    def run(
        self,
        thread_id: str,
        action_id: str,
        tool: str,
        arguments: dict[str, Any],
        call: Callable[[str | None], Any],
        *,
        write: bool,
        idempotency_key: str | None = None,
    ) -> JournalEntry:
        """Run ``call(idempotency_key)`` so that its effect happens once, and return the closed entry.

        A closed entry is returned as recorded. A ``ToolError`` that is not
        retryable closes the entry as ``failed``: the tool changed nothing. A
        retryable failure is retried with backoff for reads, and for writes
        only with an idempotency key on a de-duplicating store; a write whose
        retries run out closes as ``unknown``, because it may have taken effect.
        Any other exception leaves the entry ``running`` and propagates; the
        next run recovers it through the idempotency key.

        Raises ``ValueError`` when the action id was journaled with other
        arguments or another tool.
        """
        arguments_json = canonical_json(arguments)
        entry = self.get(thread_id, action_id)
        if entry is not None and (entry.tool != tool or entry.arguments_json != arguments_json):
            raise ValueError(
                f"action {action_id!r} on thread {thread_id!r} was journaled as {entry.tool} "
                f"{entry.arguments_json}, not {tool} {arguments_json}; a changed action needs a new id"
            )
        if entry is not None and entry.state in CLOSED_STATES:
            logger.info("journal returned recorded outcome action_id=%s state=%s", action_id, entry.state)
            return entry

        recovering = entry is not None and entry.state == "running"
        if recovering and write and not (idempotency_key and self.deduplicating_store):
            # Without a de-duplicating key a second call could act twice.
            logger.warning("journal cannot recover write without idempotency key action_id=%s", action_id)
            return self._save(entry.model_copy(update={"state": "unknown", "error": UNKNOWN_OUTCOME}), "closed")
        if entry is None:
            entry = JournalEntry(
                thread_id=thread_id, action_id=action_id, tool=tool, arguments_json=arguments_json,
                idempotency_key=idempotency_key, state="intended", updated_at=_now(),
            )
            entry = self._save(entry, "intended")
        return self._attempt(entry, call, write=write, recovering=recovering)

    def _attempt(
        self, entry: JournalEntry, call: Callable[[str | None], Any], *, write: bool, recovering: bool
    ) -> JournalEntry:
        may_retry = not write or (entry.idempotency_key is not None and self.deduplicating_store)
        while True:
            entry = self._save(entry.model_copy(update={"state": "running", "attempts": entry.attempts + 1}), "running")
            try:
                result = call(entry.idempotency_key)
            except self.retry.retryable as error:
                if may_retry and entry.attempts < self.retry.max_attempts:
                    delay = self.retry.delay(entry.attempts)
                    logger.warning(
                        "tool call failed, retrying tool=%s action_id=%s attempt=%d delay_s=%.2f error=%s",
                        entry.tool, entry.action_id, entry.attempts, delay, error,
                    )
                    time.sleep(delay)
                    continue
                state: EntryState = "unknown" if write else "failed"
                detail = f"{type(error).__name__}: {error}"
                message = f"{UNKNOWN_OUTCOME} ({detail})" if write else f"{detail} after {entry.attempts} attempts"
                logger.warning(
                    "tool call gave up tool=%s action_id=%s attempts=%d state=%s error=%s",
                    entry.tool, entry.action_id, entry.attempts, state, error,
                )
                return self._save(entry.model_copy(update={"state": state, "error": message, "recovered": recovering}), "closed")
            except ToolError as error:
                return self._save(entry.model_copy(update={"state": "failed", "error": str(error), "recovered": recovering}), "closed")
            entry = entry.model_copy(update={"result": result, "recovered": recovering})
            if self.hook is not None:
                self.hook("returned", entry)
            return self._save(entry.model_copy(update={"state": "done"}), "closed")
