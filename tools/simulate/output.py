"""Where simulated records go (Kafka or a JSON-lines file), and the paced loop that sends them."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from stream.config import Settings
from stream.kafka_options import kafka_options
from tools.kafka_clients import start_client
from tools.simulate.exceptions import SinkError
from tools.simulate.malformed import Record

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

logger = logging.getLogger(__name__)


class RecordSink(Protocol):
    """An output of records; :meth:`flush` returns once everything written so far is durable."""

    async def write(self, record: Record) -> None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


class JsonLinesSink:
    """One payload per line, written as raw bytes (a malformed payload stays byte-exact).

    ``-`` writes to standard output. Payloads never contain a raw newline: JSON escapes it.
    """

    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._stream: IO[bytes] | None = None

    def _open(self) -> IO[bytes]:
        if self._stream is None:
            try:
                self._stream = sys.stdout.buffer if self._path == "-" else open(self._path, "wb")  # noqa: SIM115
            except OSError as exc:
                raise SinkError(f"cannot open {self._path}: {exc}") from exc
        return self._stream

    async def write(self, record: Record) -> None:
        self._open().write(record.value + b"\n")

    async def flush(self) -> None:
        if self._stream is not None:
            self._stream.flush()

    async def close(self) -> None:
        if self._stream is not None:
            self._stream.flush()
            if self._stream is not sys.stdout.buffer:
                self._stream.close()
            self._stream = None


class KafkaSink:
    """Produces to one topic with aiokafka, keyed by user id.

    Sends are not awaited one by one (that caps throughput at the round-trip rate): up to
    ``max_in_flight`` deliveries are outstanding, then all of them are awaited together.
    """

    def __init__(self, settings: Settings, topic: str | None = None, *, max_in_flight: int = 2000) -> None:
        self._settings = settings
        self.topic = topic or settings.topic_events
        self._max_in_flight = max_in_flight
        self._producer: AIOKafkaProducer | None = None
        self._in_flight: list[asyncio.Future[Any]] = []

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            # acks=all: a record counts as sent only once the in-sync replicas have it.
            producer = AIOKafkaProducer(acks="all", linger_ms=5, **kafka_options(self._settings))
            await start_client(producer, self._settings.kafka_bootstrap)
            self._producer = producer
        return self._producer

    async def write(self, record: Record) -> None:
        producer = await self._started()
        self._in_flight.append(await producer.send(self.topic, record.value, key=record.key))
        if len(self._in_flight) >= self._max_in_flight:
            await self.flush()

    async def flush(self) -> None:
        pending, self._in_flight = self._in_flight, []
        if pending:
            await asyncio.gather(*pending)

    async def close(self) -> None:
        if self._producer is not None:
            try:
                await self.flush()
            finally:
                await self._producer.stop()
                self._producer = None


@dataclass
class SendSummary:
    """What a run sent; ``stopped_by`` says why it ended."""

    sent: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    first_ts: int | None = None
    last_ts: int | None = None
    elapsed_s: float = 0.0
    stopped_by: str = "exhausted"

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Pacer:
    """Holds a steady average rate (records per second; ``None`` = unthrottled).

    It schedules against the start time rather than sleeping a fixed interval per record, so
    the rate does not drift with the cost of producing, and it sleeps only once a few
    milliseconds of lead have built up (sleeping per record would cap the rate itself).
    """

    def __init__(self, rate: float | None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or None for unthrottled)")
        self._rate = rate
        self._start = time.monotonic()

    async def wait(self, done: int) -> None:
        if self._rate is None:
            return
        lead = self._start + done / self._rate - time.monotonic()
        if lead > 0.005:
            await asyncio.sleep(lead)


async def send_records(
    records: Iterable[Record],
    sink: RecordSink,
    *,
    rate: float | None = None,
    max_records: int | None = None,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
) -> SendSummary:
    """Send ``records`` to ``sink`` at ``rate`` until one of the limits (or ``stop``) ends it.

    The sink is flushed before this returns, so every counted record has been acknowledged.
    """
    summary = SendSummary()
    pacer = Pacer(rate)
    started = time.monotonic()
    for record in records:
        if max_records is not None and summary.sent >= max_records:
            summary.stopped_by = "count"
            break
        if duration_s is not None and time.monotonic() - started >= duration_s:
            summary.stopped_by = "duration"
            break
        if stop is not None and stop.is_set():
            summary.stopped_by = "signal"
            break
        await sink.write(record)
        summary.sent += 1
        if record.malformed:
            summary.malformed[record.malformed] = summary.malformed.get(record.malformed, 0) + 1
        if summary.first_ts is None:
            summary.first_ts = record.ts
        summary.last_ts = record.ts
        await pacer.wait(summary.sent)
        if summary.sent % 1000 == 0:
            # Unthrottled runs must still let signal handlers and the producer's tasks run.
            await asyncio.sleep(0)
    await sink.flush()
    summary.elapsed_s = time.monotonic() - started
    return summary
