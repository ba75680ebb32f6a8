"""Replay of the ``demand.events`` topic, from the beginning to the end captured at start.

The offline retraining job reads exactly what producers published, through the stream's own
decoder. Stopping rule: the end offsets are captured when the replay starts, but some brokers
(tansu 0.6, used in development) report wrong end offsets after batched produce. So the replay
stops only when every partition has reached its captured end *and* polls have returned nothing
for ``idle_s``; if the captured ends are never reached (reported too high), it gives up after
``max_idle_s`` of silence with a warning instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from stream.config import Settings
from stream.contracts import Event, EventDecoder, InvalidEvent
from stream.kafka_options import kafka_options
from training.data.bad_rows import BadRows
from training.data.exceptions import DataFormatError, KafkaReplayError

logger = logging.getLogger(__name__)


async def load_kafka(
    settings: Settings,
    topic: str | None = None,
    *,
    bad_rows: BadRows | None = None,
    poll_ms: int = 200,
    idle_s: float = 1.0,
    max_idle_s: float = 30.0,
) -> AsyncIterator[Event]:
    """Yield every valid event of ``topic`` (default: the events topic), partition by partition
    in offset order. A bad record is reported as ``kafka:<topic>[<partition>]`` at its offset."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = topic or settings.topic_events
    sink = bad_rows or BadRows(strict=True)
    decoder = EventDecoder(max_bytes=settings.max_event_bytes, min_ts_ms=settings.min_event_ts_ms)
    # No group: a replay must neither join the workers' group nor commit offsets.
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **kafka_options(settings))
    try:
        await consumer.start()
    except Exception as exc:
        raise KafkaReplayError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    try:
        await consumer.topics()  # refreshes the metadata that partitions_for_topic reads
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise KafkaReplayError(f"topic {topic!r} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        position: dict[Any, int] = await consumer.beginning_offsets(tps)
        end: dict[Any, int] = await consumer.end_offsets(tps)
        logger.info(
            "replaying %s to captured end offsets %s",
            topic,
            {tp.partition: o for tp, o in end.items()},
        )
        last_data = time.monotonic()
        while True:
            batch = await consumer.getmany(*tps, timeout_ms=poll_ms)
            if batch:
                last_data = time.monotonic()
                for tp, records in batch.items():
                    for record in records:
                        result = decoder.decode(record.value)
                        if isinstance(result, InvalidEvent):
                            source = f"kafka:{topic}[{tp.partition}]"
                            sink.record(DataFormatError(source, record.offset, f"{result.code}: {result.reason}"))
                        else:
                            yield result
                    position[tp] = records[-1].offset + 1
                continue
            silent_for = time.monotonic() - last_data
            if silent_for >= idle_s and all(position[tp] >= end[tp] for tp in tps):
                break
            if silent_for >= max_idle_s:
                logger.warning(
                    "stopping replay of %s after %.0fs of silence short of the captured end "
                    "offsets "
                    "(positions %s, ends %s)",
                    topic,
                    silent_for,
                    {tp.partition: position[tp] for tp in tps},
                    {tp.partition: end[tp] for tp in tps},
                )
                break
    finally:
        await consumer.stop()


class _Done:
    """End-of-replay marker on the hand-over queue."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def iter_kafka(
    settings: Settings,
    topic: str | None = None,
    *,
    bad_rows: BadRows | None = None,
    buffer: int = 10_000,
    idle_s: float = 1.0,
) -> Iterator[Event]:
    """Synchronous :func:`load_kafka`: the consumer runs on its own event loop in a thread and
    hands events over through a bounded queue, so memory stays bounded like the file loaders."""
    handover: queue.Queue[Event | _Done] = queue.Queue(maxsize=buffer)
    abandoned = threading.Event()

    def put(item: Event | _Done) -> bool:
        while not abandoned.is_set():
            try:
                handover.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    async def pump() -> None:
        async for event in load_kafka(settings, topic, bad_rows=bad_rows, idle_s=idle_s):
            if not put(event):
                return

    def run() -> None:
        try:
            asyncio.run(pump())
        except BaseException as exc:  # handed to the reading thread, which re-raises it
            put(_Done(exc))
        else:
            put(_Done())

    thread = threading.Thread(target=run, name="kafka-replay", daemon=True)
    thread.start()
    try:
        while True:
            item = handover.get()
            if isinstance(item, _Done):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        abandoned.set()
        thread.join()
