"""Offsets and partitions: batch fetching, rewinds after broker trouble, the rebalance listener.

Everything here talks to the aiokafka consumer; what a batch does with its records is
``batch.py``'s business, and the loop that ties them together is ``service.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiokafka import ConsumerRebalanceListener, TopicPartition

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, ConsumerRecord

logger = logging.getLogger(__name__)

_IDLE_POLL_MS = 200  # how long an idle worker waits for a first record before re-checking stop

Batch = dict[TopicPartition, list["ConsumerRecord"]]


async def fetch_batch(consumer: AIOKafkaConsumer, limit: int, linger_ms: int) -> Batch:
    """Up to ``limit`` records, waiting at most ``linger_ms`` to fill a batch.

    Adaptive: lingering only pays while records keep arriving. Once a fetch finds nothing
    more buffered the batch goes as it is, so a lightly loaded worker does not add the linger
    to every event's latency; under load the records that arrive while a batch is being
    processed make the next batch large.
    """
    batch: Batch = await consumer.getmany(timeout_ms=_IDLE_POLL_MS, max_records=limit)
    count = sum(len(records) for records in batch.values())
    deadline = time.monotonic() + linger_ms / 1000
    while 0 < count < limit and deadline - time.monotonic() > 0:
        more = await consumer.getmany(timeout_ms=0, max_records=limit - count)
        if not more:
            break
        for tp, records in more.items():
            batch.setdefault(tp, []).extend(records)
            count += len(records)
    return batch


def next_offsets(batch: Batch) -> dict[TopicPartition, int]:
    """The offsets to commit once ``batch`` is done: one past its last record, per partition."""
    return {tp: records[-1].offset + 1 for tp, records in batch.items() if records}


async def rewind_to_committed(consumer: AIOKafkaConsumer) -> None:
    """After a broker outage, continue from the group's committed offsets (earliest where none).

    The consumer's in-memory positions assume the log it left; a broker that came back without
    its data (or a failover that truncated a partition) can leave them inside the new log and
    records would be skipped. Re-reading from the last commit is safe: at-least-once output,
    and window/state updates are idempotent per event_id.
    """
    for tp in consumer.assignment():
        committed = await consumer.committed(tp)
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)
    logger.info("Kafka back: resumed %d partitions from their committed offsets", len(consumer.assignment()))


async def rewind_past_log_end(consumer: AIOKafkaConsumer) -> None:
    """Re-read from the earliest offset any partition whose position lies past its log end.

    Kafka answers a fetch past the end with OFFSET_OUT_OF_RANGE and the consumer applies its
    reset policy; brokers that answer with an empty fetch instead (tansu) would leave the
    worker waiting there, silently skipping everything written below that offset. That
    happens when a broker comes back without its data and a commit from before the outage
    points past the new log. Checked only when a fetch found nothing, so it costs no time
    under load.
    """
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        if end is None:
            continue
        position = await consumer.position(tp)
        if position > end:
            logger.warning(
                "%s-%d: position %d is past the log end %d (broker lost records?): reading from the earliest",
                tp.topic,
                tp.partition,
                position,
                end,
            )
            await consumer.seek_to_beginning(tp)


class FinishBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets the batches in progress publish and commit before their partitions are taken away."""

    def __init__(
        self,
        lock: asyncio.Lock,
        wait_in_flight: Callable[[], Awaitable[None]],
        assigned: set[TopicPartition],
        on_revoked: Callable[[set[TopicPartition]], Awaitable[None]],
        on_assigned: Callable[[set[TopicPartition]], Awaitable[None]],
    ) -> None:
        self._lock = lock
        self._wait_in_flight = wait_in_flight
        self._assigned = assigned
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:  # the batch being processed has been handed to its publish task
            await self._wait_in_flight()
            self._assigned.difference_update(revoked)
            await self._on_revoked(revoked)
            logger.info("partitions revoked: %s", sorted(f"{tp.topic}:{tp.partition}" for tp in revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned.update(assigned)
        await self._on_assigned(assigned)
        logger.info("partitions assigned: %s", sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))
