"""Shared pytest fixtures: a real tansu broker and a private Redis for the whole session.

- ``kafka_broker``: bootstrap string of a session-wide in-memory tansu broker.
- ``redis_server``: a session-wide private redis-server (``.url``, ``.port``, ``.stop()``,
  ``.start()``, ``.kill()``, ``.restart()``); a test that leaves it stopped gets it restarted.
- ``topics`` / ``topics_factory``: uniquely named events/predictions/dlq/models topics per test,
  created with explicit partition counts (``@pytest.mark.partitions(n)``, default 3).
- ``settings_factory(**overrides)``: a :class:`Settings` pointed at all of the above, with a
  unique Redis key prefix and consumer group per test.

Both servers are stopped at session end, and die with the pytest process even on SIGKILL
(see tools/devinfra/processes.py); tests/integration/test_devinfra.py checks it.
Tests under tests/integration/ get the ``integration`` marker automatically.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from stream.config import Settings
from tools.devinfra.broker import TansuBroker, create_topics
from tools.devinfra.redis_server import RedisServer

DEFAULT_TEST_PARTITIONS = 3
# tansu makes group joins wait half the session timeout: keep it short in tests (DESIGN.md).
TEST_SESSION_TIMEOUT_MS = 6000
_INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "partitions(n): partition count of the topics made by the `topics` fixture"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka_broker_process(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[TansuBroker]:
    """The session's tansu broker object (for tests that need its process)."""
    broker = TansuBroker(workdir=tmp_path_factory.mktemp("tansu"))
    await broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_broker(kafka_broker_process: TansuBroker) -> str:
    """Bootstrap servers (``host:port``) of the session's broker."""
    return kafka_broker_process.bootstrap


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's private redis-server."""
    server = RedisServer(workdir=tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _restart_redis_left_down(request: pytest.FixtureRequest) -> Iterator[None]:
    """A fault test that stops Redis and fails before restarting it must not break the rest."""
    server: RedisServer | None = None
    if "redis_server" in request.fixturenames:
        server = request.getfixturevalue("redis_server")
    yield
    if server is not None and not server.running:
        server.start()


@dataclass(frozen=True, slots=True)
class Topics:
    """One test's own topics."""

    events: str
    predictions: str
    dlq: str
    partitions: int

    def names(self) -> tuple[str, str, str]:
        return (self.events, self.predictions, self.dlq)


TopicsFactory = Callable[..., Awaitable[Topics]]


@pytest_asyncio.fixture(loop_scope="session")
async def topics_factory(kafka_broker: str) -> TopicsFactory:
    """``await topics_factory(partitions=3)``: a fresh, uniquely named set of topics."""

    async def make(partitions: int = DEFAULT_TEST_PARTITIONS) -> Topics:
        base = f"t{uuid.uuid4().hex[:10]}"
        made = Topics(
            events=f"{base}.events",
            predictions=f"{base}.predictions",
            dlq=f"{base}.events.dlq",
            partitions=partitions,
        )
        await create_topics(kafka_broker, dict.fromkeys(made.names(), partitions))
        return made

    return make


@pytest_asyncio.fixture(loop_scope="session")
async def topics(request: pytest.FixtureRequest, topics_factory: TopicsFactory) -> Topics:
    """This test's topics, with ``@pytest.mark.partitions(n)`` partitions (default 3)."""
    marker = request.node.get_closest_marker("partitions")
    partitions = int(marker.args[0]) if marker else DEFAULT_TEST_PARTITIONS
    return await topics_factory(partitions=partitions)


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def settings_factory(
    kafka_broker: str, redis_server: RedisServer, topics: Topics, tmp_path: Path
) -> SettingsFactory:
    """``settings_factory(**overrides)``: Settings for this test's broker, Redis and topics."""
    unique = uuid.uuid4().hex[:10]

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "kafka_bootstrap": kafka_broker,
            "redis_url": redis_server.url,
            "topic_events": topics.events,
            "topic_predictions": topics.predictions,
            "topic_dlq": topics.dlq,
            "topic_partitions": topics.partitions,
            "consumer_group": f"g-{unique}",
            "kafka_session_timeout_ms": TEST_SESSION_TIMEOUT_MS,
            "redis_key_prefix": f"test-{unique}",
            "model_registry": tmp_path / "models",
            "http_port": 0,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make
