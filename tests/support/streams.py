"""Helpers shared by the worker, fault-injection, fuzz and privacy tests (this module holds no tests).

Everything waits for conditions with bounded polling; nothing asserts on how long a step took.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.config import Settings
from stream.contracts import DeadLetter, Event, Prediction, encode_event
from stream.store.keys import decode_entry
from stream.store.redis_backing import fence_epoch_key
from stream.worker import Worker

WAIT_S = 90.0


def interleaved(histories: Sequence[Sequence[Event]]) -> list[Event]:
    """Round-robin over users, so that batches mix users and hold several events per user."""
    out: list[Event] = []
    for j in range(max(len(h) for h in histories)):
        out.extend(h[j] for h in histories if j < len(h))
    return out


def event_payloads(events: Sequence[Event]) -> list[tuple[bytes | None, bytes]]:
    return [(e.user_id.encode(), encode_event(e)) for e in events]


async def produce(
    bootstrap: str, topic: str, payloads: Sequence[tuple[bytes | None, bytes]], *, max_request_size: int = 1048576
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=max_request_size, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for key, value in payloads]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str, topic: str, count: int, *, timeout_s: float = WAIT_S, settle_s: float = 1.0
) -> list[bytes]:
    """Every value of ``topic`` once ``count`` arrived, plus ``settle_s`` to catch extras (or until the timeout)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())])
        values: list[bytes] = []
        deadline, settled_at = time.monotonic() + timeout_s, None
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values.extend(r.value for r in records if r.value is not None)
            if len(values) >= count:
                settled_at = settled_at or time.monotonic()
                if time.monotonic() - settled_at >= settle_s:
                    break
        return values
    finally:
        await consumer.stop()


class TopicReader:
    """Reads a topic from the start, accumulating values across calls (one consumer, reused)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.values: list[bytes] = []
        self._consumer: AIOKafkaConsumer | None = None

    async def _ensure(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, auto_offset_reset="earliest", fetch_max_bytes=8 * 1024 * 1024
            )
            await consumer.start()
            partitions = consumer.partitions_for_topic(self.topic) or set()
            consumer.assign([TopicPartition(self.topic, p) for p in partitions])
            self._consumer = consumer
        return self._consumer

    async def poll(self) -> list[bytes]:
        consumer = await self._ensure()
        batch = await consumer.getmany(timeout_ms=200)
        for records in batch.values():
            self.values.extend(r.value for r in records if r.value is not None)
        return self.values

    async def until(self, done: Callable[[list[bytes]], bool], *, timeout_s: float = WAIT_S) -> list[bytes]:
        """Poll until ``done(values)`` holds; fail (assert) at the deadline."""
        deadline = time.monotonic() + timeout_s
        while not done(await self.poll()):
            assert time.monotonic() < deadline, f"{self.topic}: condition not met, {len(self.values)} values read"
        return self.values

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


async def predictions_until(settings: Settings, done: Callable[[list[bytes]], bool]) -> list[bytes]:
    """Every prediction from the start once ``done(values)`` holds (a one-shot TopicReader)."""
    reader = TopicReader(settings.kafka_bootstrap, settings.topic_predictions)
    try:
        return await reader.until(done)
    finally:
        await reader.close()


def predicted_ids(values: Sequence[bytes]) -> set[str]:
    return {msgspec.json.decode(v, type=Prediction).event_id for v in values}


def predicts_all(events: Sequence[Event]) -> Callable[[list[bytes]], bool]:
    """A :meth:`TopicReader.until` condition: every one of ``events`` has a prediction."""
    wanted = {e.event_id for e in events}
    return lambda values: predicted_ids(values) >= wanted


def dead_letters(values: Sequence[bytes]) -> list[DeadLetter]:
    return [msgspec.json.decode(v, type=DeadLetter) for v in values]


async def redis_dump(url: str, prefix: str) -> dict[str, Any]:
    """Every user key under ``prefix`` with its value (lists, hashes) and its remaining TTL in ms.

    The fence epoch counter is left out: no user's data, and it never expires (docs/redis-layout.md).
    """
    client = aioredis.from_url(url)
    try:
        out: dict[str, Any] = {}
        async for key in client.scan_iter(match=f"{prefix}:*"):
            if key.decode() == fence_epoch_key(prefix):
                continue
            kind = await client.type(key)
            value = await (client.lrange(key, 0, -1) if kind == b"list" else client.hgetall(key))
            out[key.decode()] = {"value": value, "pttl": await client.pttl(key)}
        return out
    finally:
        await client.aclose()


def window_duplicates(dump: dict[str, Any]) -> dict[str, list[str]]:
    """Window keys holding an event id more than once (must be empty)."""
    bad: dict[str, list[str]] = {}
    for key, item in dump.items():
        if key.endswith(":w"):
            ids = [decode_entry(entry)[2] for entry in item["value"]]
            if len(ids) != len(set(ids)):
                bad[key] = sorted({i for i in ids if ids.count(i) > 1})
    return bad


class Running:
    """A worker running as a task in this event loop."""

    def __init__(self, settings: Settings) -> None:
        self.worker = Worker(settings)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.worker.run(self.stop))

    def alive(self) -> bool:
        return not self.task.done()

    async def wait_assigned(self, timeout_s: float = WAIT_S) -> None:
        """Wait until the consumer group gave this worker partitions."""
        await self.until(lambda: bool(self.worker.assigned), timeout_s=timeout_s, what="a partition assignment")

    async def until(self, condition: Callable[[], bool], *, timeout_s: float = WAIT_S, what: str = "") -> None:
        """Wait for ``condition``; fail if the deadline passes or the worker died meanwhile."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self.task.done():
                raise AssertionError(f"worker exited while waiting for {what}: {self.task!r}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.worker.metrics.registry.get_sample_value(name, labels or {}) or 0.0

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, WAIT_S)


class Captured(logging.Handler):
    """Keeps every formatted log record (all loggers, all levels) for leak checks."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.exc_info and not record.exc_text:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)

    def text(self) -> str:
        return "\n".join(self.lines)

    def __enter__(self) -> Captured:
        root = logging.getLogger()
        self._previous = root.level
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._previous)


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that makes ``demandstream worker`` use ``settings`` (secrets included)."""
    import os

    from pydantic import SecretStr

    env = dict(os.environ)
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"DEMANDSTREAM_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def rss_bytes(pid: int) -> int:
    """Resident set size of a live process (Linux /proc)."""
    from pathlib import Path

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


async def produce_located(
    bootstrap: str, topic: str, payloads: Sequence[tuple[bytes | None, bytes | None]]
) -> list[tuple[int, int]]:
    """Produce, returning each record's ``(partition, offset)`` in input order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for key, value in payloads]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metadata]
