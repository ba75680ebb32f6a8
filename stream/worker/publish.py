"""Batched produce: one aiokafka record batch per partition instead of one ``send`` per record.

``AIOKafkaProducer.send`` costs tens of microseconds per record in Python (partitioning with a
pure-Python murmur2, a future and an accumulator lookup each). :class:`BatchPublisher` groups
a micro-batch's records by (topic, partition) with the producer's own partitioner (so keys land
where ``send`` would put them), caches each key's partition, fills ``create_batch`` builders and
submits them with ``send_batch``. Record order within a partition is the input order.

Error policy (docs/reliability.md): an error that a later try can cure (broker down, leader
moving, timeout) fails the whole :meth:`BatchPublisher.publish` and the caller retries the
batch with a bounded backoff. An error that no retry can cure (:data:`PERMANENT_ERRORS`: the
record is over a size limit, malformed, or the topic refuses us) would stall the stream
forever if retried: the records of the refused partition batch are sent again one by one, and
those still refused come back as :class:`Refused` for the caller to count and log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    InvalidTimestampError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    PolicyViolationError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)
from aiokafka.partitioner import DefaultPartitioner

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

Record = tuple[str, bytes | None, bytes]  # topic, key, value
_MAX_CACHED_KEYS = 200_000  # partition cache bound (cleared when full: cheap to refill)

# Produce errors that no retry cures. Authorization is among them: retried, it would stall
# every partition behind one misconfigured ACL; refused, it is counted and logged at ERROR.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
    InvalidTopicError,
    PolicyViolationError,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)


class Refused(NamedTuple):
    """A record the broker refused for good (it was not produced)."""

    topic: str
    key: bytes | None
    size: int  # bytes of the value
    error: Exception


class _TooLargeForBatch(RecordTooLargeError):  # type: ignore[misc]
    """The record does not fit an empty producer batch (``max_batch_size``)."""


class BatchPublisher:
    """Publishes lists of records through one producer; :meth:`publish` returns once all are acked."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._partitioner = DefaultPartitioner()
        self._cache: dict[tuple[str, bytes], tuple[int, int]] = {}  # (topic, key) -> (n_partitions, partition)

    async def _partitions(self, topic: str) -> list[int]:
        return sorted(await self._producer.partitions_for(topic))

    def _partition_of(self, topic: str, key: bytes | None, partitions: list[int]) -> int:
        if key is None:
            return int(self._partitioner(None, partitions, partitions))
        cached = self._cache.get((topic, key))
        if cached is not None and cached[0] == len(partitions):
            return cached[1]
        partition = int(self._partitioner(key, partitions, partitions))
        if len(self._cache) >= _MAX_CACHED_KEYS:
            self._cache.clear()
        self._cache[(topic, key)] = (len(partitions), partition)
        return partition

    async def publish(self, records: Sequence[Record]) -> list[Refused]:
        """Send ``records`` and wait for every acknowledgement; returns those refused for good.

        Raises the first retriable error (the caller retries the whole list: at-least-once).
        """
        if not records:
            return []
        pending = await self._submit(records)
        outcomes = await asyncio.gather(*(future for future, _, _ in pending), return_exceptions=True)
        retriable = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, PERMANENT_ERRORS)]
        if retriable:
            raise retriable[0]
        refused: list[Refused] = []
        for (_, topic, items), outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, PERMANENT_ERRORS):
                refused += await self._one_by_one(topic, items, outcome)
        return refused

    async def _one_by_one(
        self, topic: str, items: Sequence[tuple[int | None, bytes | None, bytes]], error: Exception
    ) -> list[Refused]:
        """Records of a refused batch, each sent alone: one bad record must not take its neighbours."""
        refused: list[Refused] = []
        for partition, key, value in items:
            if isinstance(error, _TooLargeForBatch):
                refused.append(Refused(topic, key, len(value), error))
                continue
            try:
                await (await self._producer.send(topic, value=value, key=key, partition=partition))
            except PERMANENT_ERRORS as exc:
                refused.append(Refused(topic, key, len(value), exc))
        return refused

    async def submit(self, records: Sequence[Record]) -> list[asyncio.Future[Any]]:
        """Queue ``records`` as per-partition batches; the futures resolve when the broker acks."""
        return [future for future, _, _ in await self._submit(records)]

    async def _submit(
        self, records: Sequence[Record]
    ) -> list[tuple[asyncio.Future[Any], str, list[tuple[int | None, bytes | None, bytes]]]]:
        """Queue ``records`` as per-partition batches: per batch, (ack future, topic, its records).

        A record that fits no batch gets an already failed future of its own.
        """
        partitions: dict[str, list[int]] = {}
        grouped: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = {}
        for topic, key, value in records:
            known = partitions.get(topic)
            if known is None:
                known = partitions[topic] = await self._partitions(topic)
            grouped.setdefault((topic, self._partition_of(topic, key, known)), []).append((key, value))
        producer = self._producer
        out: list[tuple[asyncio.Future[Any], str, list[tuple[int | None, bytes | None, bytes]]]] = []
        for (topic, partition), items in grouped.items():
            batch = producer.create_batch()
            held: list[tuple[int | None, bytes | None, bytes]] = []
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    # Full: submit it and start the next batch of this partition (order kept).
                    batch.close()
                    out.append((await producer.send_batch(batch, topic, partition=partition), topic, held))
                    batch, held = producer.create_batch(), []
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                        failed.set_exception(_TooLargeForBatch(f"a record of {len(value)} bytes fits no batch"))
                        out.append((failed, topic, [(partition, key, value)]))
                        continue
                held.append((partition, key, value))
            batch.close()
            if held:
                out.append((await producer.send_batch(batch, topic, partition=partition), topic, held))
        return out
