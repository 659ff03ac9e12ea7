"""The embedded Redis is shared by the processes of one data directory."""

from __future__ import annotations

import redis

from warden.runtime import open_redis
from warden.settings import Settings


def test_last_process_out_stops_embedded_redis(tmp_path):
    settings = Settings.from_env(data_dir=tmp_path, redis_url=None)
    state_file = tmp_path / "redis" / "server.json"
    with open_redis(settings) as owner_url:
        reviewer = redis.Redis.from_url(owner_url)
        reviewer.set("decision", "approve")
    # The process that started the server left while a client was connected.
    assert state_file.exists()
    assert reviewer.get("decision") == b"approve"
    reviewer.close()
    with open_redis(settings) as url:
        assert url == owner_url
        client = redis.Redis.from_url(url)
        assert client.get("decision") == b"approve"
        client.close()
    assert not state_file.exists()
    try:
        redis.Redis.from_url(owner_url, socket_connect_timeout=1).ping()
        stopped = False
    except redis.exceptions.ConnectionError:
        stopped = True
    assert stopped
