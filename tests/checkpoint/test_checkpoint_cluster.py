"""RedisSaver on a three-node Redis Cluster built from the system redis-server."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster
from checkpoint_support import (
    ALL_CAPABILITIES,
    SYSTEM_REDIS,
    build_support_graph,
    stop_server,
)
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.types import Command
from redis.crc import key_slot

from warden.checkpoint import RedisSaver
from warden.checkpoint_keys import thread_keys
from warden.redis_server import RedisServer, free_port

NODES = 3


@pytest.fixture(scope="module")
def cluster_nodes(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[RedisServer]]:
    redis_cli = shutil.which("redis-cli")
    if not os.access(SYSTEM_REDIS, os.X_OK) or redis_cli is None:
        pytest.skip("a system redis-server and redis-cli are needed for a cluster")
    root = tmp_path_factory.mktemp("cluster")
    servers = []
    try:
        for index in range(NODES):
            data_dir = root / f"node-{index}"
            servers.append(
                RedisServer(
                    data_dir,
                    appendonly=False,
                    binary=SYSTEM_REDIS,
                    extra_args=[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(data_dir / "nodes.conf"),
                        "--cluster-node-timeout",
                        "2000",
                        # The default bus port is port + 10000, past 65535 for
                        # high free ports, so pick it explicitly.
                        "--cluster-port",
                        str(free_port()),
                    ],
                ).start()
            )
        addresses = [f"127.0.0.1:{server.port}" for server in servers]
        subprocess.run(
            [
                redis_cli,
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _wait_for_cluster(servers)
        yield servers
    finally:
        for server in servers:
            stop_server(server)


def _wait_for_cluster(servers: list[RedisServer]) -> None:
    deadline = time.monotonic() + 30
    for server in servers:
        client = redis.Redis(port=server.port)
        while client.cluster("info").get("cluster_state") != "ok":
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"cluster node {server.port} never reached state ok"
                )
            time.sleep(0.1)
        client.close()


@pytest.fixture
def cluster(cluster_nodes: list[RedisServer]) -> Iterator[redis.cluster.RedisCluster]:
    client = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster_nodes[0].port)
    client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    yield client
    client.close()


def test_cluster_conformance(cluster, cluster_nodes) -> None:
    port = cluster_nodes[0].port

    @checkpointer_test(name="RedisSaver-cluster")
    async def factory():
        aclient = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port)
        yield RedisSaver(cluster, aclient=aclient)
        await aclient.aclose()

    report = asyncio.run(validate(factory))
    failed = {
        name: result.failures
        for name, result in report.results.items()
        if not (result.detected and result.passed)
    }
    assert set(report.results) == ALL_CAPABILITIES
    assert failed == {}


def test_cluster_thread_on_one_node(cluster) -> None:
    saver = RedisSaver(cluster, ttl_seconds=600)
    graph = build_support_graph(saver)
    slots = set()
    for thread_id in ("alpha", "beta", "gamma{x}", "delta}"):
        config = {"configurable": {"thread_id": thread_id}}
        graph.invoke({"trace": []}, config)
        result = graph.invoke(Command(resume="approved"), config)
        assert result["decision"] == "approved:cancel_pending_order"
        keys = thread_keys(thread_id)
        assert sum(cluster.exists(key) for key in keys) == 7
        slots.add(key_slot(keys[0].encode()))
    # The four threads spread over several slots, each thread within one.
    assert len(slots) == 4
    saver.persist("alpha")
    saver.prune("beta", keep_last=1)
    saver.copy_thread("gamma{x}", "copy")
    saver.delete_thread("delta}")
    assert len(list(saver.list({"configurable": {"thread_id": "beta"}}))) == 1
    assert len(list(saver.list({"configurable": {"thread_id": "copy"}}))) == 8
    assert sum(cluster.exists(key) for key in thread_keys("delta}")) == 0
    assert len(list(saver.list(None))) == 8 + 1 + 8 + 8
