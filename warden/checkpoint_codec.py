"""Encoding and decoding of the Redis checkpoint saver's script arguments and replies.

Pure functions: they turn LangGraph checkpoints into the arguments of the Lua scripts
in ``checkpoint_scripts`` and the scripts' replies back into ``CheckpointTuple``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    SerializerProtocol,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)

from warden.checkpoint_keys import KEY_PREFIX, check_part, thread_keys
from warden.errors import CheckpointDecodeError


def pack_typed(typed: tuple[str, bytes]) -> bytes:
    """Pack a serializer's ``(type, bytes)`` pair for storage."""
    return ormsgpack.packb([typed[0], typed[1]])


def put_args(
    serde: SerializerProtocol,
    ttl_arg: int,
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
    prefix: str = KEY_PREFIX,
) -> tuple[list[str], list[Any], RunnableConfig]:
    """Return the PUT script's keys and arguments and the new checkpoint's config."""
    configurable = config["configurable"]
    thread_id = configurable["thread_id"]
    ns = check_part("checkpoint_ns", configurable.get("checkpoint_ns", ""))
    checkpoint_id = check_part("checkpoint id", checkpoint["id"])
    stored = checkpoint.copy()
    values: dict[str, Any] = stored.pop("channel_values")  # type: ignore[misc]
    member = f"{ns}\x00{checkpoint_id}"

    record = ormsgpack.packb(
        [*serde.dumps_typed(stored), configurable.get("checkpoint_id")]
    )
    meta = pack_typed(serde.dumps_typed(get_checkpoint_metadata(config, metadata)))
    refs = ormsgpack.packb(
        [
            f"{ns}\x00{channel}\x00{version}"
            for channel, version in checkpoint["channel_versions"].items()
        ]
    )
    args: list[Any] = [ttl_arg, member, record, meta, refs]
    for channel, version in new_versions.items():
        args.append(f"{ns}\x00{channel}\x00{version}")
        if channel in values:
            args.append(pack_typed(serde.dumps_typed(values[channel])))
        else:
            args.append(pack_typed(("empty", b"")))
    next_config: RunnableConfig = {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }
    return thread_keys(thread_id, prefix), args, next_config


def put_writes_args(
    serde: SerializerProtocol,
    ttl_arg: int,
    config: RunnableConfig,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
    prefix: str = KEY_PREFIX,
) -> tuple[list[str], list[Any]]:
    """Return the keys and arguments of the PUT_WRITES script."""
    configurable = config["configurable"]
    ns = check_part("checkpoint_ns", configurable.get("checkpoint_ns", ""))
    checkpoint_id = check_part("checkpoint id", configurable["checkpoint_id"])
    args: list[Any] = [ttl_arg, f"{ns}\x00{checkpoint_id}\x00"]
    for idx, (channel, value) in enumerate(writes):
        write_idx = WRITES_IDX_MAP.get(channel, idx)
        value_type, value_bytes = serde.dumps_typed(value)
        args.append(f"{task_id}\x00{write_idx}")
        args.append(
            ormsgpack.packb(
                [task_id, channel, value_type, value_bytes, task_path, write_idx]
            )
        )
        # Special writes (errors, interrupts, resumes) replace an earlier one
        # from the same task; regular writes keep the first stored value.
        args.append("1" if write_idx < 0 else "0")
    return thread_keys(configurable["thread_id"], prefix), args


def load_value(
    serde: SerializerProtocol,
    typed: tuple[str, bytes],
    *,
    key: str,
    channel: str,
    where: str,
) -> Any:
    """Deserialize one stored value; any failure becomes ``CheckpointDecodeError``."""
    try:
        return serde.loads_typed(typed)
    except CheckpointDecodeError as exc:
        raise CheckpointDecodeError(
            f"failed to load {channel!r} of {where} from Redis key {key!r}: {exc}",
            key=key,
            channel=channel,
            type_name=exc.type_name,
        ) from exc
    except Exception as exc:  # noqa: BLE001 - a custom serde may raise anything
        raise CheckpointDecodeError(
            f"failed to load {channel!r} of {where} from Redis key {key!r}: "
            f"{type(exc).__name__}: {exc} (stored as {typed[0]!r}); check that the "
            "saver's serde can read what the writer's serde stored",
            key=key,
            channel=channel,
            type_name=typed[0],
        ) from exc


def decode_entry(
    serde: SerializerProtocol,
    thread_id: Any,
    keys: list[str],
    entry: list[Any],
    config: RunnableConfig | None = None,
) -> CheckpointTuple:
    """Rebuild a ``CheckpointTuple`` from one ``load()`` reply of the Lua scripts.

    ``config`` is returned as the tuple's config when the caller named a checkpoint,
    as ``InMemorySaver`` does; otherwise the config is built from the reply.
    """
    member_raw, record, meta, refs, blobs, writes = entry
    ns, checkpoint_id = member_raw.decode().split("\x00", 1)
    where = f"checkpoint {checkpoint_id} (thread {thread_id!r}, namespace {ns!r})"
    checkpoint_type, checkpoint_bytes, parent_id = ormsgpack.unpackb(record)
    checkpoint = load_value(
        serde,
        (checkpoint_type, checkpoint_bytes),
        key=keys[1],
        channel="<checkpoint>",
        where=where,
    )

    values: dict[str, Any] = {}
    fields = ormsgpack.unpackb(refs) if refs else []
    for field, raw in zip(fields, blobs):
        if raw is None:
            continue
        value_type, value_bytes = ormsgpack.unpackb(raw)
        if value_type == "empty":
            continue
        channel = field[len(ns) + 1 : field.rindex("\x00")]
        values[channel] = load_value(
            serde,
            (value_type, value_bytes),
            key=keys[4],
            channel=channel,
            where=where,
        )
    checkpoint["channel_values"] = values

    metadata = (
        load_value(
            serde,
            tuple(ormsgpack.unpackb(meta)),
            key=keys[2],
            channel="<metadata>",
            where=where,
        )
        if meta
        else {}
    )

    decoded_writes = []
    for raw in writes:
        if raw is None:
            continue
        task_id, channel, value_type, value_bytes, task_path, idx = ormsgpack.unpackb(
            raw
        )
        value = load_value(
            serde,
            (value_type, value_bytes),
            key=keys[5],
            channel=channel,
            where=f"pending write of task {task_id} to {where}",
        )
        sort_key = writes_sort_key(task_path, task_id, idx)
        decoded_writes.append((sort_key, task_id, channel, value))
    decoded_writes.sort(key=lambda item: item[0])
    pending: list[PendingWrite] = [
        (task_id, channel, value) for _, task_id, channel, value in decoded_writes
    ]

    own_config: RunnableConfig = config or {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }
    parent_config: RunnableConfig | None = (
        {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": parent_id,
            }
        }
        if parent_id
        else None
    )
    return CheckpointTuple(
        config=own_config,
        checkpoint=checkpoint,
        metadata=metadata,
        parent_config=parent_config,
        pending_writes=pending,
    )


def list_plan(
    serde: SerializerProtocol,
    config: RunnableConfig,
    filter: dict[str, Any] | None,
    before: RunnableConfig | None,
) -> tuple[str, str, bool, Any]:
    """Return the LIST script's lex range for ``config`` and ``before``.

    Also returns whether the client must check each member, and the predicate that
    checks a member and its raw metadata against the id bounds and ``filter``.
    """
    configurable = config["configurable"]
    ns = configurable.get("checkpoint_ns")
    exact_id = get_checkpoint_id(config)
    before_id = get_checkpoint_id(before) if before else None
    if ns is None:
        low, high = "-", "+"
        client_side = bool(filter or exact_id or before_id)
    else:
        check_part("checkpoint_ns", ns)
        if exact_id:
            low = high = f"[{ns}\x00{exact_id}"
        elif before_id:
            low, high = f"({ns}\x00", f"({ns}\x00{before_id}"
        else:
            low, high = f"({ns}\x00", f"({ns}\x01"
        client_side = bool(filter or (exact_id and before_id))

    def accepts(member: str, meta_raw: bytes | None, keys: list[str]) -> bool:
        checkpoint_id = member.split("\x00", 1)[1]
        if exact_id and checkpoint_id != exact_id:
            return False
        if before_id and checkpoint_id >= before_id:
            return False
        if filter:
            metadata = (
                load_value(
                    serde,
                    tuple(ormsgpack.unpackb(meta_raw)),
                    key=keys[2],
                    channel="<metadata>",
                    where=f"checkpoint {checkpoint_id}",
                )
                if meta_raw
                else {}
            )
            return all(metadata.get(k) == v for k, v in filter.items())
        return True

    return low, high, client_side, accepts
