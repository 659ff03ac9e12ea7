"""Entry points for ``langgraph dev`` and LangGraph Studio.

``langgraph.json`` names ``checkpointer`` so the dev server keeps threads in the
project's Redis saver: the one ``REDIS_URL`` points at, or the embedded server
in the data directory.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from warden.checkpoint import RedisSaver
from warden.runtime import open_redis
from warden.settings import Settings


@contextlib.asynccontextmanager
async def checkpointer() -> AsyncIterator[RedisSaver]:
    """Yield the Redis saver for the dev server's lifetime."""
    settings = Settings.from_env()
    with open_redis(settings) as redis_url:
        saver = RedisSaver.from_url(
            redis_url,
            ttl_seconds=settings.checkpoint_ttl_seconds,
            key_prefix=settings.checkpoint_key_prefix,
        )
        try:
            yield saver
        finally:
            if saver.aclient is not None:
                await saver.aclient.aclose()
            if saver.client is not None:
                saver.client.close()
