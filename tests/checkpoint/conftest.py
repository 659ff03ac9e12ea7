"""Fixtures of the checkpoint saver tests: savers and private Redis servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from checkpoint_support import stop_server

from warden.checkpoint import RedisSaver
from warden.redis_server import RedisServer


@pytest.fixture(scope="session", autouse=True)
def _close_session_server_pipe(redis_server: RedisServer) -> Iterator[None]:
    yield
    # NOTE: RedisServer leaves the child's stderr pipe open; with warnings as
    # errors the unclosed pipe fails the whole run at garbage collection.
    process = redis_server._process
    if process is not None and process.stderr is not None:
        process.stderr.close()


@pytest.fixture
def saver(redis_url: str) -> Iterator[RedisSaver]:
    """A sync-only saver on the flushed session server."""
    client = redis.Redis.from_url(redis_url)
    yield RedisSaver(client)
    client.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    """Start private servers for one test; all of them are stopped at teardown."""
    started: list[RedisServer] = []

    def start(name: str = "redis", **kwargs) -> RedisServer:
        server = RedisServer(tmp_path / name, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        stop_server(server)
