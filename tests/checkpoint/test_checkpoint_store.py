"""Redis-level guarantees of RedisSaver: TTL refresh, pruning without orphans,
hash tags, connection errors and client checks."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis
import redis.asyncio
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot

from warden.checkpoint import RedisSaver
from warden.checkpoint_client import _LoggedRetry
from warden.checkpoint_keys import thread_keys
from warden.errors import CheckpointConnectionError, ConfigurationError
from warden.redis_server import free_port


def _config(thread_id: str, ns: str = "", checkpoint_id: str | None = None) -> dict:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def _put_chain(
    saver: RedisSaver, thread_id: str, count: int, ns: str = ""
) -> list[dict]:
    """Store ``count`` linked checkpoints, each with a new value and one write."""
    stored = []
    parent = _config(thread_id, ns)
    version = None
    for step in range(count):
        version = saver.get_next_version(version, None)
        checkpoint = generate_checkpoint(
            channel_values={"counter": step, "fixed": "same"},
            channel_versions={"counter": version, "fixed": "1"},
        )
        new_versions = (
            {"counter": version, "fixed": "1"} if step == 0 else {"counter": version}
        )
        config = saver.put(
            parent, checkpoint, {"source": "loop", "step": step}, new_versions
        )
        saver.put_writes(config, [("counter", step + 100)], f"task-{step}")
        stored.append(config)
        parent = config
    return stored


def _thread_keys_in_redis(client: redis.Redis, thread_id: str) -> set[bytes]:
    return set(client.scan_iter(match=f"*{{{thread_id}}}*"))


# -- TTL ----------------------------------------------------------------------------


def test_ttl_refresh_keeps_live_state(redis_client: redis.Redis) -> None:
    saver = RedisSaver(redis_client, ttl_seconds=2)
    _put_chain(saver, "live", 3)
    deadline = time.monotonic() + 5
    reads = 0
    while time.monotonic() < deadline:
        assert saver.get_tuple(_config("live")) is not None
        reads += 1
        time.sleep(0.4)
    assert reads >= 10
    tuple_ = saver.get_tuple(_config("live"))
    assert tuple_.checkpoint["channel_values"] == {"counter": 2, "fixed": "same"}
    assert tuple_.pending_writes == [("task-2", "counter", 102)]


def test_ttl_refresh_by_list(redis_client: redis.Redis) -> None:
    saver = RedisSaver(redis_client, ttl_seconds=2)
    _put_chain(saver, "listed", 2)
    for _ in range(6):
        time.sleep(0.5)
        assert len(list(saver.list(_config("listed")))) == 2


def test_all_keys_share_deadline(redis_client: redis.Redis) -> None:
    saver = RedisSaver(redis_client, ttl_seconds=60)
    _put_chain(saver, "shared", 1)
    time.sleep(1.1)
    # The writes keys are older than this put; the put must move them too.
    _put_chain(saver, "shared", 1)
    keys = _thread_keys_in_redis(redis_client, "shared")
    assert len(keys) == 7
    ttls = [redis_client.pttl(key) for key in keys]
    assert max(ttls) - min(ttls) < 200
    assert min(ttls) > 58_000


def test_no_ttl_by_default(saver: RedisSaver, redis_client: redis.Redis) -> None:
    _put_chain(saver, "forever", 2)
    keys = _thread_keys_in_redis(redis_client, "forever")
    assert keys
    assert {redis_client.ttl(key) for key in keys} == {-1}


def test_ttl_must_be_positive(redis_client: redis.Redis) -> None:
    with pytest.raises(ConfigurationError, match="ttl_seconds"):
        RedisSaver(redis_client, ttl_seconds=0)


# -- prune and delete -----------------------------------------------------------------


def test_prune_keep_last_per_namespace(
    saver: RedisSaver, redis_client: redis.Redis
) -> None:
    root = _put_chain(saver, "pr", 5)
    child = _put_chain(saver, "pr", 4, ns="child:1")
    saver.prune("pr", keep_last=2)

    kept_root = [t.config for t in saver.list(_config("pr"))]
    kept_child = [t.config for t in saver.list(_config("pr", "child:1"))]
    assert kept_root == root[:-3:-1]
    assert kept_child == child[:-3:-1]
    latest = saver.get_tuple(_config("pr"))
    assert latest.checkpoint["channel_values"] == {"counter": 4, "fixed": "same"}
    assert latest.pending_writes == [("task-4", "counter", 104)]
    older = saver.get_tuple(kept_root[1])
    assert older.checkpoint["channel_values"] == {"counter": 3, "fixed": "same"}

    keys = thread_keys("pr")
    # Two kept checkpoints per namespace, each reading two blobs; "fixed" is shared.
    assert redis_client.hlen(keys[4]) == 2 * 2 + 1 * 2
    assert redis_client.hlen(keys[5]) == 4
    assert redis_client.zcard(keys[6]) == 4
    for hash_key in keys[1:4]:
        assert redis_client.hlen(hash_key) == 4


def test_prune_keep_latest_default(saver: RedisSaver) -> None:
    stored = _put_chain(saver, "latest", 3)
    saver.prune(["latest"])
    assert [t.config for t in saver.list(_config("latest"))] == [stored[-1]]


def test_prune_keep_last_rejects_zero(saver: RedisSaver) -> None:
    with pytest.raises(ValueError, match="keep_last"):
        saver.prune("x", keep_last=0)
    with pytest.raises(ValueError, match="strategy"):
        saver.prune("x", strategy="oldest")


def test_prune_delete_leaves_no_keys(
    saver: RedisSaver, redis_client: redis.Redis
) -> None:
    _put_chain(saver, "gone", 3)
    _put_chain(saver, "stays", 2)
    saver.prune("gone", strategy="delete")
    assert _thread_keys_in_redis(redis_client, "gone") == set()
    assert len(_thread_keys_in_redis(redis_client, "stays")) == 7


def test_delete_thread_leaves_no_keys(redis_client: redis.Redis) -> None:
    saver = RedisSaver(redis_client, ttl_seconds=60)
    _put_chain(saver, "del", 3)
    _put_chain(saver, "del", 2, ns="child:1")
    saver.persist("del")
    _put_chain(saver, "other", 1)
    saver.delete_thread("del")
    assert _thread_keys_in_redis(redis_client, "del") == set()
    assert saver.get_tuple(_config("del")) is None
    assert len(_thread_keys_in_redis(redis_client, "other")) == 7


def test_async_prune_and_delete(redis_url: str, redis_client: redis.Redis) -> None:
    async def run() -> None:
        saver = RedisSaver.from_url(redis_url)
        _put_chain(saver, "apr", 4)
        await saver.aprune("apr", keep_last=1)
        assert len([t async for t in saver.alist(_config("apr"))]) == 1
        await saver.adelete_thread("apr")
        saver.client.close()
        await saver.aclient.aclose()

    asyncio.run(run())
    assert _thread_keys_in_redis(redis_client, "apr") == set()


def test_persist_only_named_thread(redis_client: redis.Redis) -> None:
    saver = RedisSaver(redis_client, ttl_seconds=60)
    _put_chain(saver, "audit", 2)
    _put_chain(saver, "normal", 2)
    saver.persist("audit")
    _put_chain(saver, "audit", 1)
    saver.get_tuple(_config("audit"))
    assert {
        redis_client.ttl(k) for k in _thread_keys_in_redis(redis_client, "audit")
    } == {-1}
    assert all(
        redis_client.ttl(k) > 0 for k in _thread_keys_in_redis(redis_client, "normal")
    )


# -- keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "thread_id", ["plain", "a{b}c", "}{", "100%", "%7B", "", "ü 🙂"]
)
def test_thread_keys_share_one_slot(
    thread_id: str, saver: RedisSaver, redis_client
) -> None:
    keys = thread_keys(thread_id)
    assert len({key_slot(key.encode()) for key in keys}) == 1
    _put_chain(saver, thread_id, 2)
    listed = list(saver.list(_config(thread_id)))
    assert [t.config["configurable"]["thread_id"] for t in listed] == [thread_id] * 2
    stored = {key for key in redis_client.scan_iter() if key.decode() in keys}
    assert len(stored) == 7


def test_escaped_ids_do_not_collide(saver: RedisSaver) -> None:
    _put_chain(saver, "a{b", 1)
    _put_chain(saver, "a%7Bb", 2)
    assert len(list(saver.list(_config("a{b")))) == 1
    assert len(list(saver.list(_config("a%7Bb")))) == 2


def test_nul_in_namespace_rejected(saver: RedisSaver) -> None:
    with pytest.raises(ValueError, match="checkpoint_ns"):
        saver.put(_config("t", "bad\x00ns"), generate_checkpoint(), {}, {})


def test_next_version_increases(saver: RedisSaver) -> None:
    versions = [saver.get_next_version(None, None)]
    for _ in range(20):
        versions.append(saver.get_next_version(versions[-1], None))
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    assert saver.get_next_version(7, None).startswith(f"{8:032}.")


# -- clients and connection errors ----------------------------------------------------


def test_unreachable_url_names_host_not_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://agent:s3cret-pass@127.0.0.1:{free_port()}/0"
    saver = RedisSaver.from_url(url)
    with caplog.at_level(logging.WARNING, logger="warden.checkpoint"):
        with pytest.raises(CheckpointConnectionError) as raised:
            saver.get_tuple(_config("t"))
    message = str(raised.value)
    assert "127.0.0.1" in message
    assert "s3cret-pass" not in message
    assert "agent:***@" in message
    retries = [r for r in caplog.records if "redis call failed" in r.getMessage()]
    assert len(retries) == 4
    assert all("s3cret-pass" not in r.getMessage() for r in caplog.records)
    saver.client.close()


def test_unreachable_url_async() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def run() -> None:
        saver = RedisSaver.from_url(url)
        try:
            with pytest.raises(CheckpointConnectionError, match="127.0.0.1"):
                await saver.aget_tuple(_config("t"))
        finally:
            saver.client.close()
            await saver.aclient.aclose()

    asyncio.run(run())


def test_decode_responses_rejected(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisSaver(client)
    client.close()


def test_client_required() -> None:
    with pytest.raises(ConfigurationError, match="from_url"):
        RedisSaver()


def test_async_only_saver_rejects_sync_calls(redis_url: str) -> None:
    async def run() -> None:
        aclient = redis.asyncio.Redis.from_url(redis_url)
        saver = RedisSaver(aclient=aclient)
        config = await saver.aput(_config("async-only"), generate_checkpoint(), {}, {})
        assert (await saver.aget_tuple(config)).config == config
        with pytest.raises(ConfigurationError, match="async client"):
            saver.get_tuple(config)
        await aclient.aclose()

    asyncio.run(run())


def test_copy_thread_applies_ttl(redis_client: redis.Redis) -> None:
    saver = RedisSaver(redis_client, ttl_seconds=60)
    stored = _put_chain(saver, "source", 3)
    saver.copy_thread("source", "target")
    copied = [t.checkpoint["id"] for t in saver.list(_config("target"))]
    assert copied == [c["configurable"]["checkpoint_id"] for c in reversed(stored)]
    target = saver.get_tuple(_config("target"))
    assert target.pending_writes == [("task-2", "counter", 102)]
    assert target.config["configurable"]["thread_id"] == "target"
    assert all(
        redis_client.ttl(k) > 0 for k in _thread_keys_in_redis(redis_client, "target")
    )


# -- the script call path --------------------------------------------------------------


def test_flushed_script_cache_is_reloaded(
    saver: RedisSaver, redis_client: redis.Redis
) -> None:
    first = _put_chain(saver, "flushed", 1)[0]
    redis_client.script_flush()
    second = _put_chain(saver, "flushed", 2)[-1]
    assert saver.get_tuple(_config("flushed")).config == second
    assert saver.get_tuple(first).pending_writes == [("task-0", "counter", 100)]


def test_flushed_script_cache_is_reloaded_async(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def run() -> None:
        saver = RedisSaver.from_url(redis_url)
        try:
            config = await saver.aput(
                _config("aflushed"), generate_checkpoint(), {}, {}
            )
            redis_client.script_flush()
            await saver.aput_writes(config, [("counter", 7)], "task-a")
            stored = await saver.aget_tuple(config)
            assert stored.pending_writes == [("task-a", "counter", 7)]
        finally:
            saver.client.close()
            await saver.aclient.aclose()

    asyncio.run(run())


def test_timed_out_script_is_retried_once_applied(
    redis_url: str, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    retry = _LoggedRetry(ExponentialBackoff(cap=0.4, base=0.1), 5)
    client = redis.Redis.from_url(redis_url, socket_timeout=0.2, retry=retry)
    saver = RedisSaver(client)
    try:
        stored = _put_chain(saver, "paused", 1)[0]
        # The server delays every command by 0.6 s, so the first attempt times
        # out and is sent again, and the server may run both copies.
        redis_client.execute_command("CLIENT", "PAUSE", 600, "ALL")
        with caplog.at_level(logging.WARNING, logger="warden.checkpoint_client"):
            saver.put_writes(stored, [("counter", 5), ("other", 6)], "task-late")
        failures = [r for r in caplog.records if "redis call failed" in r.getMessage()]
        assert failures, "the paused call should have timed out at least once"
        writes = saver.get_tuple(stored).pending_writes
        assert writes == [
            ("task-0", "counter", 100),
            ("task-late", "counter", 5),
            ("task-late", "other", 6),
        ]
    finally:
        client.close()


def test_killed_idle_connection_is_retried(
    redis_url: str, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    saver = RedisSaver.from_url(redis_url)
    try:
        stored = _put_chain(saver, "killed", 1)[0]
        killed = redis_client.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        with caplog.at_level(logging.WARNING, logger="warden.checkpoint_client"):
            assert saver.get_tuple(_config("killed")).config == stored
        failures = [r for r in caplog.records if "redis call failed" in r.getMessage()]
        assert len(failures) == 1
    finally:
        saver.client.close()
        asyncio.run(saver.aclient.aclose())


@pytest.mark.parametrize(
    "options",
    [{"single_connection_client": True}, {"protocol": 3}],
    ids=["single-connection", "resp3"],
)
def test_other_client_kinds_round_trip(redis_url: str, options: dict) -> None:
    client = redis.Redis.from_url(redis_url, **options)
    try:
        saver = RedisSaver(client)
        thread_id = "kind-" + "-".join(f"{k}={v}" for k, v in options.items())
        stored = _put_chain(saver, thread_id, 3)
        latest = saver.get_tuple(stored[-1])
        assert latest.checkpoint["channel_values"] == {"counter": 2, "fixed": "same"}
        assert latest.pending_writes == [("task-2", "counter", 102)]
        listed = [item.config for item in saver.list(_config(thread_id))]
        assert listed == stored[::-1]
    finally:
        client.close()


# -- key prefixes -------------------------------------------------------------------


def test_prefixes_keep_same_thread_apart(redis_client: redis.Redis) -> None:
    acme = RedisSaver(redis_client, key_prefix="warden:acme:cp")
    globex = RedisSaver(redis_client, key_prefix="warden:globex:cp")
    _put_chain(acme, "t-1", 3)
    _put_chain(globex, "t-1", 1)
    assert len(list(acme.list(_config("t-1")))) == 3
    assert len(list(globex.list(_config("t-1")))) == 1
    assert [t.config["configurable"]["thread_id"] for t in acme.list(None)] == ["t-1"] * 3
    acme.delete_thread("t-1")
    assert acme.get_tuple(_config("t-1")) is None
    assert globex.get_tuple(_config("t-1")) is not None
    keys = {key.decode() for key in _thread_keys_in_redis(redis_client, "t-1")}
    # The eighth key, "keep", exists only for a thread exempted from the TTL.
    assert keys == set(thread_keys("t-1", "warden:globex:cp")[:7])


def test_default_prefix_unchanged(saver: RedisSaver, redis_client: redis.Redis) -> None:
    _put_chain(saver, "legacy", 1)
    keys = {key.decode() for key in _thread_keys_in_redis(redis_client, "legacy")}
    assert keys <= set(thread_keys("legacy"))
    assert all(key.startswith("warden:cp:{legacy}:") for key in keys)


@pytest.mark.parametrize("prefix", ["", "warden:*:cp", "warden:{t}:cp", "has space", 7])
def test_invalid_prefix_rejected(redis_client: redis.Redis, prefix: object) -> None:
    with pytest.raises(ConfigurationError, match="invalid checkpoint key prefix"):
        RedisSaver(redis_client, key_prefix=prefix)
