"""Redis clients of the checkpoint saver: timeouts, bounded retries, safe URLs."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from warden.errors import ConfigurationError

logger = logging.getLogger(__name__)

SOCKET_TIMEOUT_SECONDS = 5.0
# A graph step issues its put and the put_writes of every task at once. A busy
# async service therefore needs many connections, and callers past the limit wait.
MAX_CONNECTIONS = 64
RETRIES = 3
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 1.0


class _LoggedRetry(Retry):
    """redis-py ``Retry`` that logs every failed attempt before backing off."""

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        attempts = 0

        def logged_fail(error: Exception, *count: int) -> Any:
            nonlocal attempts
            attempts += 1
            logger.warning(
                "redis call failed attempt=%d max_retries=%d error=%s",
                attempts,
                self._retries,
                error,
            )
            return fail(error, *count)

        return super().call_with_retry(
            do, logged_fail, is_retryable, with_failure_count
        )


class _AsyncLoggedRetry(redis.asyncio.retry.Retry):
    """Async twin of ``_LoggedRetry``."""

    async def call_with_retry(
        self, do, fail, is_retryable=None, with_failure_count=False
    ):
        attempts = 0

        async def logged_fail(error: Exception, *count: int) -> Any:
            nonlocal attempts
            attempts += 1
            logger.warning(
                "redis call failed attempt=%d max_retries=%d error=%s",
                attempts,
                self._retries,
                error,
            )
            return await fail(error, *count)

        return await super().call_with_retry(
            do, logged_fail, is_retryable, with_failure_count
        )


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def describe_client(client: Any) -> str:
    """Return the address of ``client`` for error messages, without credentials."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        # RedisCluster keeps one pool per node and has no single address.
        return f"{type(client).__name__} {client!r}"
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host, port, db = (
        kwargs.get("host", "?"),
        kwargs.get("port", "?"),
        kwargs.get("db", 0),
    )
    return f"redis://{host}:{port}/{db}"


def check_binary_responses(client: Any, name: str) -> None:
    """Reject a client that decodes replies to ``str``; stored values are binary."""
    if client is not None and client.get_encoder().decode_responses:
        raise ConfigurationError(
            f"{name} was created with decode_responses=True; the checkpoint saver "
            "stores binary values, so pass a client with decode_responses=False."
        )


def create_clients(url: str) -> tuple[redis.Redis, redis.asyncio.Redis]:
    """Create the sync and async clients that ``RedisSaver.from_url`` uses.

    Both time out socket reads and connects after ``SOCKET_TIMEOUT_SECONDS`` and
    retry connection errors and timeouts ``RETRIES`` times with exponential backoff,
    logging each failed attempt. Each holds at most ``MAX_CONNECTIONS`` connections,
    and a call that finds none free waits up to ``SOCKET_TIMEOUT_SECONDS`` for one.

    Raises:
        ConfigurationError: ``url`` is not a valid Redis URL.
    """
    common = {
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": SOCKET_TIMEOUT_SECONDS,
        "decode_responses": False,
        "max_connections": MAX_CONNECTIONS,
        "timeout": SOCKET_TIMEOUT_SECONDS,
    }
    backoff = ExponentialBackoff(cap=BACKOFF_CAP_SECONDS, base=BACKOFF_BASE_SECONDS)
    try:
        pool = redis.BlockingConnectionPool.from_url(
            url, retry=_LoggedRetry(backoff, RETRIES), **common
        )
        apool = redis.asyncio.BlockingConnectionPool.from_url(
            url, retry=_AsyncLoggedRetry(backoff, RETRIES), **common
        )
    except ValueError as exc:
        raise ConfigurationError(
            f"invalid Redis URL {redact_url(url)!r}: {exc}"
        ) from None
    # from_pool hands each pool to its client, so closing the client releases it.
    return redis.Redis.from_pool(pool), redis.asyncio.Redis.from_pool(apool)
