"""The per-thread run lock: one run of a thread at a time, across processes.

The lock is a Redis key with a lease, so a process that dies holding it blocks
the thread only until the lease ends. Its value names the holder's process, and
a waiter on the same machine takes the lock over at once when that process no
longer exists.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from warden.errors import ThreadStateError

logger = logging.getLogger(__name__)

WAIT_SECONDS = 120.0
_POLL_SECONDS = 0.05


def process_space() -> str:
    """Return an id of the kernel boot and pid namespace that this process's pid belongs to.

    Two processes with the same value can check each other's pids; containers
    on one machine share the boot id but not the pid namespace.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        # Without /proc no holder can be checked, so waiters rely on the lease.
        return f"unchecked-{uuid.uuid4().hex}"
    return f"{boot}/{namespace}"


_SPACE = process_space()


def _holder(value: bytes | str) -> tuple[str, int] | None:
    """Return the process space and pid recorded in a lock value, or None if it has none."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _is_dead(space: str, pid: int) -> bool:
    """Return True only when ``pid`` of this machine's pid namespace no longer exists."""
    if space != _SPACE or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@contextlib.contextmanager
def run_lock(
    client: redis.Redis,
    name: str,
    *,
    lease_seconds: float,
    subject: str,
    wait_seconds: float = WAIT_SECONDS,
) -> Iterator[None]:
    """Hold the lock ``name`` for the duration of the block.

    Waits up to ``wait_seconds`` for another run to finish. A holder on this
    machine whose process is gone is replaced at once, with a WARNING naming it.

    Raises:
        ThreadStateError: the lock is still held after ``wait_seconds``; the
            message names the holder and when its lease ends.
    """
    token = f"{_SPACE}:{os.getpid()}:{uuid.uuid4().hex}"
    lock = client.lock(name, timeout=lease_seconds)
    deadline = time.monotonic() + wait_seconds
    while not lock.acquire(blocking=False, token=token):
        value = client.get(name)
        holder = _holder(value) if value is not None else None
        if holder is not None and _is_dead(*holder):
            # Lock.do_release deletes the key only while it still has this value.
            with contextlib.suppress(redis.exceptions.LockNotOwnedError):
                lock.do_release(value)
                logger.warning("run lock taken over from dead process lock=%s pid=%d", name, holder[1])
            continue
        if time.monotonic() >= deadline:
            raise ThreadStateError(_busy_message(client, name, holder, subject))
        time.sleep(_POLL_SECONDS)
    try:
        yield
    finally:
        with contextlib.suppress(redis.exceptions.LockError):
            lock.release()


def _busy_message(client: Any, name: str, holder: tuple[str, int] | None, subject: str) -> str:
    remaining = client.pttl(name)
    owner = f"process {holder[1]}" if holder else "another process"
    if holder is not None and holder[0] != _SPACE:
        owner += " on another machine"
    lease = (
        f"its lease ends in {remaining / 1000:.0f} s" if remaining and remaining > 0 else "its lease is ending"
    )
    return (
        f"{subject} is busy with a run of {owner}; {lease} (WARDEN_RUN_LOCK_SECONDS). "
        "Try again then, or sooner if that run finishes"
    )
