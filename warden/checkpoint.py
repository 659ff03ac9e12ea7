"""LangGraph checkpoint saver on plain Redis: the runtime's memory and audit trail.

Every write is one Lua script, so a crash leaves the old or the new state and never
half of one. Key layout, TTL and crash-safety rules are in docs/checkpointer.md.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import ormsgpack
import redis
import redis.asyncio
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    SerializerProtocol,
    get_checkpoint_id,
)

from warden import checkpoint_scripts as scripts
from warden.checkpoint_client import (
    AsyncScriptRunner,
    ScriptRunner,
    check_binary_responses,
    create_clients,
    describe_client,
    redact_url,
)
from warden.checkpoint_codec import (
    decode_entry,
    list_plan,
    load_value,
    put_args,
    put_writes_args,
)
from warden.checkpoint_keys import (
    KEY_PREFIX,
    check_key_prefix,
    check_part,
    thread_id_from_key,
    thread_key_pattern,
    thread_keys,
)
from warden.checkpoint_serde import CheckpointSerializer
from warden.errors import CheckpointConnectionError, ConfigurationError

logger = logging.getLogger(__name__)

# Checkpoints per LIST call. A full page contains whole states, so it stays small;
# metadata-only pages, used when the client filters, can be larger.
FULL_PAGE = 32
META_PAGE = 256

_SCRIPT_NAMES = ("PUT", "PUT_WRITES", "GET", "LIST", "LOAD_MANY", "PRUNE", "PERSIST")


class RedisSaver(BaseCheckpointSaver[str]):
    """Checkpoint saver that stores LangGraph threads in Redis, Valkey or Redis Cluster.

    Uses plain hashes, sorted sets and Lua scripts, no modules, so it runs on
    Redis 6.2+ and Valkey. ``put``, ``put_writes``, ``get_tuple`` and every
    maintenance call are one script each: one round trip, applied atomically.

    Args:
        client: Sync client, used by the sync API (``graph.invoke``).
        aclient: Async client, used by the async API (``graph.ainvoke``). Without
            it the async API runs the sync calls in a worker thread.
        ttl_seconds: Expiry for every key of a thread, refreshed by every read and
            write of the thread, so all keys of one thread expire together.
            ``None`` keeps threads until deleted. ``persist`` exempts one thread.
        serde: Serializer; defaults to ``CheckpointSerializer``, which writes
            LangGraph's msgpack format and raises ``CheckpointDecodeError``
            instead of returning a dict for a class that cannot be rebuilt.
        key_prefix: Start of every key, ``warden:cp`` by default. Savers with
            different prefixes on one server see only their own threads, which
            is how tenants are kept apart.

    Both clients must keep ``decode_responses=False``. Connection failures that
    outlast the clients' retries raise ``CheckpointConnectionError``.
    """

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        aclient: redis.asyncio.Redis | None = None,
        ttl_seconds: int | None = None,
        serde: SerializerProtocol | None = None,
        key_prefix: str = KEY_PREFIX,
    ) -> None:
        super().__init__(serde=serde or CheckpointSerializer())
        try:
            self.key_prefix = check_key_prefix(key_prefix)
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
        if client is None and aclient is None:
            raise ConfigurationError(
                "RedisSaver needs a client or an aclient; use RedisSaver.from_url(url) "
                "to create both."
            )
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise ConfigurationError(
                f"ttl_seconds must be a positive number of seconds or None, "
                f"got {ttl_seconds!r}"
            )
        check_binary_responses(client, "client")
        check_binary_responses(aclient, "aclient")
        self.client = client
        self.aclient = aclient
        self.ttl_seconds = ttl_seconds
        self._ttl_arg = int(ttl_seconds or 0)
        self._location = describe_client(client if client is not None else aclient)
        sources = {name: getattr(scripts, name) for name in _SCRIPT_NAMES}
        self._run = ScriptRunner(client, sources) if client is not None else None
        self._arun = (
            AsyncScriptRunner(aclient, sources) if aclient is not None else None
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        ttl_seconds: int | None = None,
        serde: SerializerProtocol | None = None,
        key_prefix: str = KEY_PREFIX,
    ) -> RedisSaver:
        """Create a saver with a sync and an async client for ``url``.

        The clients come from ``checkpoint_client.create_clients``: 5 s socket
        timeouts, at most 64 connections each, and 3 logged retries with
        exponential backoff. Every script is idempotent, so a retried write cannot
        apply twice.
        """
        client, aclient = create_clients(url)
        saver = cls(
            client, aclient=aclient, ttl_seconds=ttl_seconds, serde=serde, key_prefix=key_prefix
        )
        saver._location = redact_url(url)
        return saver

    def _keys(self, thread_id: Any) -> list[str]:
        return thread_keys(thread_id, self.key_prefix)

    # -- sync API ---------------------------------------------------------------

    @contextmanager
    def _store_errors(self) -> Iterator[None]:
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise CheckpointConnectionError(
                f"Redis checkpoint store at {self._location} is unreachable: {exc}. "
                "Check that the server is running and REDIS_URL points at it."
            ) from exc

    def _sync(self) -> ScriptRunner:
        if self.client is None:
            raise ConfigurationError(
                "this RedisSaver has only an async client; use the async API "
                "(ainvoke, aget_tuple, ...) or pass client= as well."
            )
        return self._run

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint, its metadata and its new channel values atomically."""
        run = self._sync()
        keys, args, next_config = put_args(
            self.serde, self._ttl_arg, config, checkpoint, metadata, new_versions,
            self.key_prefix,
        )
        with self._store_errors():
            run("PUT", keys, args)
        return next_config

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store the pending writes of one task atomically."""
        run = self._sync()
        keys, args = put_writes_args(
            self.serde, self._ttl_arg, config, writes, task_id, task_path,
            self.key_prefix,
        )
        with self._store_errors():
            run("PUT_WRITES", keys, args)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Return the checkpoint named by ``config``, or the namespace's latest."""
        run = self._sync()
        configurable = config["configurable"]
        thread_id = configurable["thread_id"]
        keys = self._keys(thread_id)
        ns = check_part("checkpoint_ns", configurable.get("checkpoint_ns", ""))
        checkpoint_id = get_checkpoint_id(config)
        with self._store_errors():
            entry = run("GET", keys, [self._ttl_arg, ns, checkpoint_id or ""])
        if not entry:
            return None
        return decode_entry(
            self.serde, thread_id, keys, entry, config if checkpoint_id else None
        )

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Yield matching checkpoints, newest first within each namespace.

        ``config=None`` lists every thread (found with SCAN); a config without
        ``checkpoint_ns`` lists every namespace of its thread. ``filter`` matches
        metadata keys by equality.
        """
        self._sync()
        if limit is not None and limit <= 0:
            return
        if config is None:
            with self._store_errors():
                thread_ids = sorted(
                    thread_id_from_key(key.decode())
                    for key in self.client.scan_iter(match=thread_key_pattern(self.key_prefix))
                )
            configs = [{"configurable": {"thread_id": t}} for t in thread_ids]
        else:
            configs = [config]
        remaining = limit
        for thread_config in configs:
            for item in self._list_thread(thread_config, filter, before, remaining):
                yield item
                if remaining is not None:
                    remaining -= 1
                    if remaining == 0:
                        return

    def _list_thread(
        self,
        config: RunnableConfig,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> Iterator[CheckpointTuple]:
        thread_id = config["configurable"]["thread_id"]
        keys = self._keys(thread_id)
        low, high, client_side, accepts = list_plan(self.serde, config, filter, before)
        run = self._run
        while True:
            if client_side:
                with self._store_errors():
                    page, metas = run(
                        "LIST", keys, [self._ttl_arg, high, low, META_PAGE, "meta"]
                    )
                count = META_PAGE
                members = [
                    member
                    for member, meta_raw in zip(page, metas)
                    if accepts(member.decode(), meta_raw, keys)
                ]
                batches = [
                    members[i : i + FULL_PAGE]
                    for i in range(0, len(members), FULL_PAGE)
                ]
            else:
                count = FULL_PAGE if limit is None else min(limit, FULL_PAGE)
                with self._store_errors():
                    page, entries = run(
                        "LIST", keys, [self._ttl_arg, high, low, count, "full"]
                    )
                # None: the LIST reply already contains the entries.
                batches = [None]
            for batch in batches:
                if batch is not None:
                    with self._store_errors():
                        entries = run("LOAD_MANY", keys, [self._ttl_arg, *batch])
                for entry in entries:
                    if entry:
                        yield decode_entry(self.serde, thread_id, keys, entry)
                        if limit is not None:
                            limit -= 1
                            if limit == 0:
                                return
            if len(page) < count:
                return
            high = b"(" + page[-1]

    def delete_thread(self, thread_id: str) -> None:
        """Delete every key of ``thread_id`` with one DEL."""
        self._sync()
        with self._store_errors():
            self.client.delete(*self._keys(thread_id))

    def prune(
        self,
        thread_ids: str | Sequence[str],
        *,
        strategy: str = "keep_latest",
        keep_last: int | None = None,
    ) -> None:
        """Keep the newest checkpoints of every namespace and drop the rest.

        ``keep_last=N`` keeps the N newest per namespace and overrides
        ``strategy``; ``strategy="keep_latest"`` keeps one, ``"delete"`` removes
        the thread. Writes and channel values that no kept checkpoint references
        are deleted in the same atomic step.

        NOTE: a graph that uses the beta ``DeltaChannel`` rebuilds a channel from
        the writes of older checkpoints, which pruning removes; do not prune such
        threads.
        """
        run = self._sync()
        for thread_id, keep in self._prune_plan(thread_ids, strategy, keep_last):
            with self._store_errors():
                run("PRUNE", self._keys(thread_id), [self._ttl_arg, keep])

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata ``run_id`` is in ``run_ids``.

        Scans every thread, so its cost grows with the whole store. Each thread
        is cleaned in one atomic step, but a checkpoint that a run writes while
        the scan is in progress can be missed.
        """
        run = self._sync()
        wanted = {str(run_id) for run_id in run_ids}
        if not wanted:
            return
        with self._store_errors():
            thread_ids = [
                thread_id_from_key(key.decode())
                for key in self.client.scan_iter(match=thread_key_pattern(self.key_prefix))
            ]
        for thread_id in thread_ids:
            keys = self._keys(thread_id)
            with self._store_errors():
                stored = self.client.hgetall(keys[2])
            members = self._members_of_runs(keys, stored, wanted)
            if members:
                with self._store_errors():
                    run("PRUNE", keys, [self._ttl_arg, -1, *members])

    def _members_of_runs(
        self, keys: list[str], stored: dict[bytes, bytes], wanted: set[str]
    ) -> list[bytes]:
        members = []
        for member, meta_raw in stored.items():
            metadata = load_value(
                self.serde,
                tuple(ormsgpack.unpackb(meta_raw)),
                key=keys[2],
                channel="<metadata>",
                where=f"checkpoint {member.decode()!r}",
            )
            if str(metadata.get("run_id")) in wanted:
                members.append(member)
        return members

    def persist(self, thread_id: str) -> None:
        """Remove the TTL from every key of ``thread_id`` and keep it off.

        Later reads and writes of the thread no longer set a TTL, so the thread
        stays until ``delete_thread`` or ``prune(strategy="delete")``.
        """
        run = self._sync()
        with self._store_errors():
            run("PERSIST", self._keys(thread_id), [self._ttl_arg])

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of one thread over another thread.

        The target's previous content is replaced. The read and the write are two
        steps because the two threads may live on different Cluster slots.
        """
        self._sync()
        source = self._keys(source_thread_id)[:7]
        target = self._keys(target_thread_id)
        with self._store_errors():
            dumps = self.client.pipeline(transaction=False)
            for key in source:
                dumps.dump(key)
            payloads = dumps.execute()
            pipe = self.client.pipeline(transaction=True)
            self._queue_copy(pipe, payloads, target)
            pipe.execute()

    def _queue_copy(self, pipe: Any, payloads: list[Any], target: list[str]) -> None:
        pipe.delete(*target)
        for key, payload in zip(target, payloads):
            if payload is not None:
                pipe.restore(key, 0, payload, replace=True)
                if self._ttl_arg:
                    pipe.expire(key, self._ttl_arg)

    def _prune_plan(
        self,
        thread_ids: str | Sequence[str],
        strategy: str,
        keep_last: int | None,
    ) -> list[tuple[str, int]]:
        if keep_last is not None:
            if (
                isinstance(keep_last, bool)
                or not isinstance(keep_last, int)
                or keep_last < 1
            ):
                raise ValueError(
                    f"keep_last must be an integer >= 1, got {keep_last!r}; "
                    "use delete_thread to remove a thread"
                )
            keep = keep_last
        elif strategy == "keep_latest":
            keep = 1
        elif strategy == "delete":
            keep = 0
        else:
            raise ValueError(
                f"unknown prune strategy {strategy!r}; "
                "expected 'keep_latest' or 'delete'"
            )
        if isinstance(thread_ids, str):
            thread_ids = [thread_ids]
        return [(thread_id, keep) for thread_id in thread_ids]

    # -- async API ----------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async ``put``."""
        if self.aclient is None:
            return await asyncio.to_thread(
                self.put, config, checkpoint, metadata, new_versions
            )
        keys, args, next_config = put_args(
            self.serde, self._ttl_arg, config, checkpoint, metadata, new_versions,
            self.key_prefix,
        )
        with self._store_errors():
            await self._arun("PUT", keys, args)
        return next_config

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Async ``put_writes``."""
        if self.aclient is None:
            return await asyncio.to_thread(
                self.put_writes, config, writes, task_id, task_path
            )
        keys, args = put_writes_args(
            self.serde, self._ttl_arg, config, writes, task_id, task_path,
            self.key_prefix,
        )
        with self._store_errors():
            await self._arun("PUT_WRITES", keys, args)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async ``get_tuple``."""
        if self.aclient is None:
            return await asyncio.to_thread(self.get_tuple, config)
        configurable = config["configurable"]
        thread_id = configurable["thread_id"]
        keys = self._keys(thread_id)
        ns = check_part("checkpoint_ns", configurable.get("checkpoint_ns", ""))
        checkpoint_id = get_checkpoint_id(config)
        with self._store_errors():
            entry = await self._arun(
                "GET", keys, [self._ttl_arg, ns, checkpoint_id or ""]
            )
        if not entry:
            return None
        return decode_entry(
            self.serde, thread_id, keys, entry, config if checkpoint_id else None
        )

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async ``list``."""
        if self.aclient is None:
            items = await asyncio.to_thread(
                lambda: [*self.list(config, filter=filter, before=before, limit=limit)]
            )
            for item in items:
                yield item
            return
        if limit is not None and limit <= 0:
            return
        if config is None:
            with self._store_errors():
                thread_ids = sorted(
                    [
                        thread_id_from_key(key.decode())
                        async for key in self.aclient.scan_iter(
                            match=thread_key_pattern(self.key_prefix)
                        )
                    ]
                )
            configs = [{"configurable": {"thread_id": t}} for t in thread_ids]
        else:
            configs = [config]
        remaining = limit
        for thread_config in configs:
            async for item in self._alist_thread(
                thread_config, filter, before, remaining
            ):
                yield item
                if remaining is not None:
                    remaining -= 1
                    if remaining == 0:
                        return

    async def _alist_thread(
        self,
        config: RunnableConfig,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> AsyncIterator[CheckpointTuple]:
        thread_id = config["configurable"]["thread_id"]
        keys = self._keys(thread_id)
        low, high, client_side, accepts = list_plan(self.serde, config, filter, before)
        run = self._arun
        while True:
            if client_side:
                with self._store_errors():
                    page, metas = await run(
                        "LIST", keys, [self._ttl_arg, high, low, META_PAGE, "meta"]
                    )
                count = META_PAGE
                members = [
                    member
                    for member, meta_raw in zip(page, metas)
                    if accepts(member.decode(), meta_raw, keys)
                ]
                batches = [
                    members[i : i + FULL_PAGE]
                    for i in range(0, len(members), FULL_PAGE)
                ]
            else:
                count = FULL_PAGE if limit is None else min(limit, FULL_PAGE)
                with self._store_errors():
                    page, entries = await run(
                        "LIST", keys, [self._ttl_arg, high, low, count, "full"]
                    )
                # None: the LIST reply already contains the entries.
                batches = [None]
            for batch in batches:
                if batch is not None:
                    with self._store_errors():
                        entries = await run("LOAD_MANY", keys, [self._ttl_arg, *batch])
                for entry in entries:
                    if entry:
                        yield decode_entry(self.serde, thread_id, keys, entry)
                        if limit is not None:
                            limit -= 1
                            if limit == 0:
                                return
            if len(page) < count:
                return
            high = b"(" + page[-1]

    async def adelete_thread(self, thread_id: str) -> None:
        """Async ``delete_thread``."""
        if self.aclient is None:
            return await asyncio.to_thread(self.delete_thread, thread_id)
        with self._store_errors():
            await self.aclient.delete(*self._keys(thread_id))

    async def aprune(
        self,
        thread_ids: str | Sequence[str],
        *,
        strategy: str = "keep_latest",
        keep_last: int | None = None,
    ) -> None:
        """Async ``prune``."""
        if self.aclient is None:
            return await asyncio.to_thread(
                self.prune, thread_ids, strategy=strategy, keep_last=keep_last
            )
        for thread_id, keep in self._prune_plan(thread_ids, strategy, keep_last):
            with self._store_errors():
                await self._arun("PRUNE", self._keys(thread_id), [self._ttl_arg, keep])

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async ``delete_for_runs``."""
        if self.aclient is None:
            return await asyncio.to_thread(self.delete_for_runs, run_ids)
        wanted = {str(run_id) for run_id in run_ids}
        if not wanted:
            return
        with self._store_errors():
            thread_ids = [
                thread_id_from_key(key.decode())
                async for key in self.aclient.scan_iter(match=thread_key_pattern(self.key_prefix))
            ]
        for thread_id in thread_ids:
            keys = self._keys(thread_id)
            with self._store_errors():
                stored = await self.aclient.hgetall(keys[2])
            members = self._members_of_runs(keys, stored, wanted)
            if members:
                with self._store_errors():
                    await self._arun("PRUNE", keys, [self._ttl_arg, -1, *members])

    async def apersist(self, thread_id: str) -> None:
        """Async ``persist``."""
        if self.aclient is None:
            return await asyncio.to_thread(self.persist, thread_id)
        with self._store_errors():
            await self._arun("PERSIST", self._keys(thread_id), [self._ttl_arg])

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async ``copy_thread``."""
        if self.aclient is None:
            return await asyncio.to_thread(
                self.copy_thread, source_thread_id, target_thread_id
            )
        source = self._keys(source_thread_id)[:7]
        target = self._keys(target_thread_id)
        with self._store_errors():
            dumps = self.aclient.pipeline(transaction=False)
            for key in source:
                dumps.dump(key)
            payloads = await dumps.execute()
            pipe = self.aclient.pipeline(transaction=True)
            self._queue_copy(pipe, payloads, target)
            await pipe.execute()

    # -- versions -----------------------------------------------------------------

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Return a version that sorts after ``current``, like ``InMemorySaver``.

        The integer part counts updates; the random fraction keeps versions written
        by concurrent forks of one thread distinct.
        """
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"
