"""Tamper-evident audit log: one hash-chained Redis stream of events per thread.

Every event the graph, the approval ledger or the runtime records is redacted,
hashed and appended with ``AuditLog.append``. Each thread owns four keys that
share the hash tag ``{<thread id>}``::

    warden:audit:<tenant>:{<thread>}:log    stream, one ``entry`` field per event
    warden:audit:<tenant>:{<thread>}:head   hash: ``count`` and ``hash`` of the last entry
    warden:audit:<tenant>:{<thread>}:dedup  hash: event id to sequence number
    warden:audit:<tenant>:{<thread>}:data   hash: sequence number to the event's data

The entry keeps the event's envelope and the sha256 of its data. The data is
stored beside it, so ``forget_thread`` can erase a customer's content and the
chain, which covers only the data's hash, still verifies. See docs/audit.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import redis

from warden.checkpoint_keys import decode_thread_id, encode_thread_id
from warden.errors import AuditAppendError
from warden.redaction import redact

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
GENESIS_HASH = "0" * 64
ERASURE_KIND = "erasure"
_MAX_APPEND_ATTEMPTS = 50
_VERIFY_BATCH = 200
# Heads of recently appended threads kept per AuditLog, to skip reading the head
# before each append. A stale head costs one retry, never a wrong entry.
_HEAD_CACHE_SIZE = 1024
# Appends one entry unless its event id was appended before, and only when the
# head still contains the hash the caller chained from. Otherwise it returns the
# current head. The entry, the head, the dedup record and the data change
# together or not at all.
_APPEND_SCRIPT = """
local known = redis.call('HGET', KEYS[3], ARGV[1])
if known then return {0, known} end
local last = redis.call('HGET', KEYS[2], 'hash') or ''
if last ~= ARGV[2] then return {-1, last, redis.call('HGET', KEYS[2], 'count') or '0'} end
redis.call('XADD', KEYS[1], '*', 'entry', ARGV[4])
redis.call('HSET', KEYS[2], 'count', ARGV[3], 'hash', ARGV[5])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[4], ARGV[3], ARGV[6]) end
local ttl = tonumber(ARGV[7])
if ttl > 0 then
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ttl) end
end
return {1, ARGV[3]}
"""
# Fields of an entry that the content hash covers: everything but the chain links.
_CHAIN_FIELDS = ("prev_hash", "content_hash", "hash")

_step: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("warden_audit_step", default=None)


def canonical(value: Any) -> str:
    """Serialise ``value`` as canonical JSON: sorted keys, no spaces, UTF-8 text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def content_hash_of(entry: dict[str, Any]) -> str:
    """Return the sha256 of an entry's canonical envelope (which contains its data hash)."""
    return sha256_hex(canonical({k: v for k, v in entry.items() if k not in _CHAIN_FIELDS}))


def link_hash(prev_hash: str, content_hash: str) -> str:
    """Return the chain hash of an entry from its predecessor's hash and its own content hash."""
    return sha256_hex(f"{prev_hash}:{content_hash}")


def checkpoint_of(config: Any) -> dict[str, str | None]:
    """Return the checkpoint a node's task runs from, read from its ``config``.

    Inside a node LangGraph 1.2 sets ``configurable.checkpoint_id`` to None and
    records the id of the checkpoint the task started from (the parent of the
    checkpoint the node's writes create) in ``checkpoint_map[""]``. That parent
    id is what audit events carry.
    """
    configurable = (config or {}).get("configurable", {})
    mapping = configurable.get("checkpoint_map") or {}
    return {
        "checkpoint_id": configurable.get("checkpoint_id") or mapping.get(""),
        "checkpoint_ns": configurable.get("checkpoint_ns", ""),
    }


@contextlib.contextmanager
def audit_step(**fields: Any) -> Iterator[None]:
    """Attach ``fields`` (turn, node, checkpoint ids) to events appended inside the block.

    The approval ledger appends its events without knowing the graph step that
    caused them, so a node wraps its ledger calls in this block to stamp them.
    """
    token = _step.set({**(_step.get() or {}), **fields})
    try:
        yield
    finally:
        _step.reset(token)


def record_step(
    audit: "AuditLog | None",
    config: Any,
    *,
    node: str,
    kind: str,
    turn: int,
    data: Any,
    ordinal: int = 0,
    round: int = 0,
    customer_id: str | None = None,
) -> None:
    """Append one event of a graph node, keyed ``t<turn>/<node>/<kind>/r<round>/<ordinal>``.

    The key is deterministic, so the node may run again (LangGraph re-runs an
    interrupted node from its start) without a second entry. Does nothing
    when ``audit`` is None.
    """
    if audit is None:
        return
    thread_id = str((config or {}).get("configurable", {}).get("thread_id", "no-thread"))
    audit.append(
        thread_id, kind, data,
        event_id=f"t{turn}/{node}/{kind}/r{round}/{ordinal}",
        turn=turn, node=node, round=round, customer_id=customer_id,
        **checkpoint_of(config),
    )


class ReadRecorder:
    """A store wrapper that keeps every call with its output or error, in call order.

    The support graph gives the policy engine one per check, so the audit log
    contains what the policy read and a dry-run replay can answer the same reads.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.reads: list[dict[str, Any]] = []

    def call(self, tool: str, arguments: dict[str, Any], **kwargs: Any) -> Any:
        try:
            output = self.store.call(tool, arguments, **kwargs)
        except Exception as error:
            # Recorded and re-raised: the policy engine decides what a failed read means.
            self.reads.append({"tool": tool, "arguments": arguments, "error": str(error), "error_type": type(error).__name__})
            raise
        self.reads.append({"tool": tool, "arguments": arguments, "output": output})
        return output


def recording_policy(policy: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Return a copy of a ``PolicyEngine`` whose store reads are recorded, and the list they go to."""
    recorder = ReadRecorder(policy.store)
    return dataclasses.replace(policy, store=recorder), recorder.reads


@dataclass
class VerifyReport:
    """The outcome of walking one thread's chain."""

    tenant: str
    thread_id: str
    ok: bool
    count: int
    """Entries read from the stream."""
    head_hash: str | None
    broken_at: int | None = None
    """Sequence number (1-based position) of the first entry that fails, when one does."""
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class AuditEntry:
    """One decoded audit entry and its data (None once erased)."""

    entry: dict[str, Any]
    data: Any = None
    erased: bool = False

    def as_export(self) -> dict[str, Any]:
        """Return the entry as one export line, the shape docs/audit.md documents."""
        return {**self.entry, "data": self.data, "erased": self.erased}


@dataclass
class AuditLog:
    """Append, read, verify, export and erase the audit entries of one tenant.

    ``ttl_seconds`` expires a thread's audit keys that long after its last
    append, independently of the checkpoints; None keeps them until erased.
    """

    client: redis.Redis
    tenant: str = "default"
    ttl_seconds: int | None = None
    _script: Any = field(default=None, init=False, repr=False)
    _heads: OrderedDict[str, tuple[int, str]] = field(default_factory=OrderedDict, init=False, repr=False)
    _heads_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if ":" in self.tenant or "{" in self.tenant or "}" in self.tenant:
            raise ValueError(f"tenant {self.tenant!r} must not contain ':', '{{' or '}}'")
        self._script = self.client.register_script(_APPEND_SCRIPT)

    def keys(self, thread_id: str) -> list[str]:
        """Return the thread's stream, head, dedup and data keys, in that order."""
        base = f"warden:audit:{self.tenant}:{{{encode_thread_id(thread_id)}}}"
        return [f"{base}:log", f"{base}:head", f"{base}:dedup", f"{base}:data"]

    def _customer_key(self, customer_id: str) -> str:
        return f"warden:audit:{self.tenant}:customer:{customer_id}"

    def append(
        self,
        thread_id: str,
        kind: str,
        data: Any = None,
        *,
        event_id: str,
        turn: int | None = None,
        node: str | None = None,
        round: int | None = None,
        checkpoint_id: str | None = None,
        checkpoint_ns: str | None = None,
        customer_id: str | None = None,
        at: datetime | None = None,
    ) -> int:
        """Append one event unless ``event_id`` is already in the thread, and return its sequence number.

        ``data`` is redacted before it is hashed or written. ``event_id`` must be
        deterministic (thread, turn, node, kind, ordinal, approval round), so a
        node that LangGraph re-runs on resume appends nothing twice. Fields left
        None are taken from an enclosing ``audit_step`` block.

        Raises ``AuditAppendError`` when concurrent appends keep moving the head
        for ``_MAX_APPEND_ATTEMPTS`` tries.
        """
        scope = _step.get() or {}
        envelope = {
            "v": SCHEMA_VERSION,
            "tenant": self.tenant,
            "thread_id": thread_id,
            "event_id": event_id,
            "kind": kind,
            "turn": turn if turn is not None else scope.get("turn"),
            "node": node if node is not None else scope.get("node"),
            "round": round if round is not None else scope.get("round"),
            "checkpoint_id": checkpoint_id if checkpoint_id is not None else scope.get("checkpoint_id"),
            "checkpoint_ns": checkpoint_ns if checkpoint_ns is not None else scope.get("checkpoint_ns"),
            "at": (at or datetime.now(timezone.utc)).isoformat(),
        }
        data_json = canonical(redact(data)) if data is not None else ""
        envelope["data_hash"] = sha256_hex(data_json) if data is not None else None
        stream, head, dedup, store = self.keys(thread_id)

        known = self._heads.get(thread_id)
        if known is None:
            count, last = self.client.hmget(head, "count", "hash")
            known = (int(count or 0), last.decode() if last else "")
        for _attempt in range(_MAX_APPEND_ATTEMPTS):
            count, last = known
            prev_hash = last or GENESIS_HASH
            entry = {**envelope, "seq": count + 1, "prev_hash": prev_hash}
            entry["content_hash"] = content_hash_of(entry)
            entry["hash"] = link_hash(prev_hash, entry["content_hash"])
            status, value, *current = self._script(
                keys=[stream, head, dedup, store],
                args=[event_id, last, entry["seq"], canonical(entry), entry["hash"], data_json, self.ttl_seconds or 0],
            )
            if status == -1:
                known = (int(current[0]), value.decode())
                continue
            if status == 1:
                self._remember(thread_id, (entry["seq"], entry["hash"]))
            else:
                self._heads.pop(thread_id, None)
            if customer_id:
                self.client.sadd(self._customer_key(customer_id), thread_id)
            return int(value)
        raise AuditAppendError(
            f"could not append audit event {event_id!r} to thread {thread_id!r} after "
            f"{_MAX_APPEND_ATTEMPTS} concurrent appends moved its head; retry the operation"
        )

    def _remember(self, thread_id: str, head: tuple[int, str]) -> None:
        with self._heads_lock:
            self._heads[thread_id] = head
            self._heads.move_to_end(thread_id)
            if len(self._heads) > _HEAD_CACHE_SIZE:
                self._heads.popitem(last=False)

    def read(self, thread_id: str) -> list[AuditEntry]:
        """Return the thread's entries in stream order with their data; raises ValueError on undecodable entries."""
        stream, _head, _dedup, store = self.keys(thread_id)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.xrange(stream)
            pipe.hgetall(store)
            rows, data = pipe.execute()
        return _decode(rows, data)

    def head(self, thread_id: str) -> dict[str, Any] | None:
        """Return the thread's head record (``count``, ``hash``) or None when it has none."""
        count, last = self.client.hmget(self.keys(thread_id)[1], "count", "hash")
        if count is None:
            return None
        return {"tenant": self.tenant, "thread_id": thread_id, "count": int(count), "hash": last.decode()}

    def thread_ids(self) -> list[str]:
        """Return every thread with audit keys in this tenant, found by SCAN, sorted."""
        found = set()
        for pattern in (f"warden:audit:{self.tenant}:{{*}}:log", f"warden:audit:{self.tenant}:{{*}}:head"):
            for key in self.client.scan_iter(match=pattern, count=1000):
                text = key.decode()
                found.add(decode_thread_id(text[text.index("{") + 1 : text.rindex("}")]))
        return sorted(found)

    def verify(self, thread_id: str, anchor: dict[str, Any] | None = None) -> VerifyReport:
        """Walk one thread's chain and report the first broken link.

        ``anchor`` is a head exported earlier (``export_heads``); the entry at
        its count must still carry its hash, which detects a rewrite of both
        the stream and the head.
        """
        return self.verify_many([thread_id], anchors={thread_id: anchor} if anchor else None)[0]

    def verify_many(
        self, thread_ids: Iterable[str], anchors: dict[str, dict[str, Any]] | None = None
    ) -> list[VerifyReport]:
        """Verify several threads, reading them from Redis in pipelined batches."""
        ids = list(thread_ids)
        reports = []
        for start in range(0, len(ids), _VERIFY_BATCH):
            batch = ids[start : start + _VERIFY_BATCH]
            with self.client.pipeline(transaction=False) as pipe:
                for thread_id in batch:
                    stream, head, _dedup, store = self.keys(thread_id)
                    pipe.xrange(stream)
                    pipe.hmget(head, "count", "hash")
                    pipe.hgetall(store)
                results = pipe.execute()
            for index, thread_id in enumerate(batch):
                rows, head, data = results[3 * index : 3 * index + 3]
                anchor = (anchors or {}).get(thread_id)
                reports.append(_verify_chain(self.tenant, thread_id, rows, head, data, anchor))
        return reports

    def verify_all(self) -> list[VerifyReport]:
        """Verify every thread of the tenant."""
        return self.verify_many(self.thread_ids())

    def export(
        self,
        *,
        thread_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield export lines for one thread, or for every thread of the tenant.

        ``since`` (inclusive) and ``until`` (exclusive) filter entries by their
        ``at`` time. Lines follow ``docs/audit.schema.json``.
        """
        threads = [thread_id] if thread_id is not None else self.thread_ids()
        for thread in threads:
            for item in self.read(thread):
                at = datetime.fromisoformat(item.entry["at"])
                if since is not None and at < since:
                    continue
                if until is not None and at >= until:
                    continue
                yield item.as_export()

    def export_heads(self) -> list[dict[str, Any]]:
        """Return the head of every thread, stamped with the time; keep it outside Redis as an anchor."""
        now = datetime.now(timezone.utc).isoformat()
        heads = [self.head(thread_id) for thread_id in self.thread_ids()]
        return [{**head, "exported_at": now} for head in heads if head is not None]

    def forget_thread(self, thread_id: str, reason: str = "erasure request") -> int:
        """Erase the data of every entry of a thread and return how many were erased.

        An ``erasure`` entry listing the erased sequence numbers is appended
        first, so the chain, which covers each data hash rather than the data,
        still verifies: ``verify`` accepts missing data only for listed entries.
        Erasure entries themselves are kept.
        """
        entries = self.read(thread_id)
        seqs = [item.entry["seq"] for item in entries if not item.erased and item.entry["kind"] != ERASURE_KIND]
        if not seqs:
            return 0
        erasures = sum(1 for item in entries if item.entry["kind"] == ERASURE_KIND)
        self.append(
            thread_id, ERASURE_KIND, {"seqs": seqs, "reason": reason},
            event_id=f"erasure/{erasures + 1}", node="retention",
        )
        self.client.hdel(self.keys(thread_id)[3], *[str(seq) for seq in seqs])
        logger.info("audit data erased tenant=%s thread_id=%s entries=%d", self.tenant, thread_id, len(seqs))
        return len(seqs)

    def forget_customer(self, customer_id: str, reason: str = "erasure request") -> dict[str, int]:
        """Erase the data of every thread recorded for ``customer_id``; return erased entries per thread."""
        threads = sorted(raw.decode() for raw in self.client.smembers(self._customer_key(customer_id)))
        erased = {thread_id: self.forget_thread(thread_id, reason) for thread_id in threads}
        self.client.delete(self._customer_key(customer_id))
        return erased


def _decode(rows: list[Any], data: dict[bytes, bytes]) -> list[AuditEntry]:
    items = []
    for _stream_id, fields in rows:
        entry = json.loads(fields[b"entry"])
        raw = data.get(str(entry["seq"]).encode())
        if raw is not None:
            items.append(AuditEntry(entry, json.loads(raw)))
        else:
            items.append(AuditEntry(entry, None, erased=entry.get("data_hash") is not None))
    return items


def _verify_chain(
    tenant: str,
    thread_id: str,
    rows: list[Any],
    head: list[bytes | None],
    data: dict[bytes, bytes],
    anchor: dict[str, Any] | None,
) -> VerifyReport:
    def broken(seq: int | None, error: str) -> VerifyReport:
        return VerifyReport(tenant, thread_id, False, len(rows), last, seq, error)

    last: str | None = None
    entries = []
    for position, (stream_id, fields) in enumerate(rows, start=1):
        try:
            entries.append(json.loads(fields[b"entry"]))
        except (KeyError, ValueError):
            return broken(position, f"stream entry {stream_id.decode()} is not a JSON audit entry")
    # Erasure entries may come after the entries they erase, so collect them first.
    erased: set[int] = set()
    for entry in entries:
        if entry.get("kind") == ERASURE_KIND:
            raw = data.get(str(entry.get("seq")).encode())
            if raw is not None:
                erased.update(json.loads(raw).get("seqs", []))

    prev = GENESIS_HASH
    for position, entry in enumerate(entries, start=1):
        if entry.get("seq") != position:
            return broken(position, f"entry {position} has sequence number {entry.get('seq')!r}: an entry was deleted, inserted or moved")
        if entry.get("prev_hash") != prev:
            return broken(position, f"entry {position} does not link to entry {position - 1}: an entry was deleted or moved")
        if content_hash_of(entry) != entry.get("content_hash"):
            return broken(position, f"entry {position} content does not match its content hash: it was edited")
        if link_hash(prev, entry["content_hash"]) != entry.get("hash"):
            return broken(position, f"entry {position} chain hash is wrong: it was edited")
        raw = data.get(str(position).encode())
        if raw is not None:
            if sha256_hex(raw.decode()) != entry.get("data_hash"):
                return broken(position, f"entry {position} data does not match its data hash: it was edited")
        elif entry.get("data_hash") is not None and position not in erased:
            return broken(position, f"entry {position} data is missing and no erasure entry lists it")
        prev = last = entry["hash"]

    count, head_hash = head
    if count is None:
        if entries:
            return broken(None, "the head record is missing: it was deleted")
    elif int(count) != len(entries) or head_hash.decode() != (last or ""):
        return broken(
            min(int(count), len(entries) + 1),
            f"the head records {int(count)} entries but the stream has {len(entries)}: the log was truncated or rewritten",
        )
    if anchor is not None:
        position = int(anchor["count"])
        if position > len(entries) or entries[position - 1]["hash"] != anchor["hash"]:
            return broken(position, f"entry {position} no longer carries the anchored hash {anchor['hash'][:16]}…: the log was rewritten")
    return VerifyReport(tenant, thread_id, True, len(entries), last)
