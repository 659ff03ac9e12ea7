"""The per-thread run lock: waiting, lease messages and takeover from a dead holder."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from warden.errors import ThreadStateError
from warden.run_lock import process_space, run_lock

NAME = "warden:test:thread_lock:t-1"


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(child.stdout)


def test_lock_is_released_after_block(redis_client):
    with run_lock(redis_client, NAME, lease_seconds=30, subject="thread 't-1'"):
        assert redis_client.exists(NAME) == 1
    assert redis_client.exists(NAME) == 0


def test_dead_holder_is_replaced(redis_client, caplog):
    pid = _dead_pid()
    stale = f"{process_space()}:{pid}:stale"
    redis_client.set(NAME, stale, px=600_000)

    with caplog.at_level(logging.WARNING, logger="warden.run_lock"):
        with run_lock(redis_client, NAME, lease_seconds=30, subject="thread 't-1'", wait_seconds=0.5):
            current = redis_client.get(NAME).decode()
            assert current != stale
            assert current.split(":")[-2] == str(os.getpid())

    assert f"pid={pid}" in caplog.text


@pytest.mark.parametrize(
    ("holder", "named"),
    [
        (lambda: f"{process_space()}:{os.getppid()}:live", "process {pid}"),
        (lambda: "other-boot/1:4242:remote", "process 4242 on another machine"),
        (lambda: "token-without-pid", "another process"),
    ],
    ids=["live-local", "other-machine", "unknown"],
)
def test_live_holder_is_waited_for(redis_client, holder, named):
    value = holder()
    redis_client.set(NAME, value, px=600_000)

    with pytest.raises(ThreadStateError) as raised:
        with run_lock(redis_client, NAME, lease_seconds=30, subject="thread 't-1'", wait_seconds=0.3):
            pytest.fail("the lock of a live holder was taken")

    message = str(raised.value)
    assert named.format(pid=os.getppid()) in message
    assert "WARDEN_RUN_LOCK_SECONDS" in message
    assert "lease ends in" in message
    assert redis_client.get(NAME).decode() == value
