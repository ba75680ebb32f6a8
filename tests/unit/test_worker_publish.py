"""The outgoing-record error policy: permanent produce errors are refused per record, never retried.

A fake producer (a pure unit: the partitioning and batching logic of BatchPublisher is under
test, not the broker) refuses any batch that holds a poison value, and the poison value alone.
tests/integration/test_faults_publish.py checks the same against the real broker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, TopicAuthorizationFailedError

from stream.retry import RetryPolicy
from stream.worker.connectivity import publish_with_retries
from stream.worker.publish import BatchPublisher

POISON = b"poison"


class _Batch:
    def __init__(self, limit: int) -> None:
        self.values: list[bytes] = []
        self.limit = limit

    def append(self, *, key: bytes | None, value: bytes, timestamp: None) -> object | None:
        if sum(map(len, self.values)) + len(value) > self.limit:
            return None
        self.values.append(value)
        return object()

    def close(self) -> None:
        pass


class FakeProducer:
    """Acks batches unless they hold POISON (refused with ``error``); ``down`` fails everything."""

    def __init__(self, error: type[Exception] = MessageSizeTooLargeError, limit: int = 1000) -> None:
        self.error, self.limit, self.down = error, limit, 0
        self.acked: list[bytes] = []
        self.single_sends = 0

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    def create_batch(self) -> _Batch:
        return _Batch(self.limit)

    def _outcome(self, values: list[bytes]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.down:
            self.down -= 1
            future.set_exception(KafkaConnectionError("broker down"))
        elif POISON in values:
            future.set_exception(self.error())
        else:
            self.acked += values
            future.set_result(None)
        return future

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        return self._outcome(batch.values)

    async def send(self, topic: str, *, value: bytes, key: bytes | None, partition: int | None) -> asyncio.Future[Any]:
        self.single_sends += 1
        return self._outcome([value])


def _records(values: list[bytes]) -> list[tuple[str, bytes | None, bytes]]:
    return [("t", b"same-key", value) for value in values]  # one key: one partition, one batch


@pytest.mark.parametrize("error", [MessageSizeTooLargeError, TopicAuthorizationFailedError])
async def test_a_permanently_refused_record_does_not_take_its_batch(error: type[Exception]) -> None:
    producer = FakeProducer(error)
    refused = await BatchPublisher(producer).publish(_records([b"a", b"b", POISON, b"c"]))  # type: ignore[arg-type]
    assert [(r.topic, r.size, type(r.error)) for r in refused] == [("t", len(POISON), error)]
    assert producer.acked == [b"a", b"b", b"c"]  # the batch's other records, one by one
    assert producer.single_sends == 4


async def test_a_record_too_large_for_any_batch_is_refused_alone() -> None:
    producer = FakeProducer(limit=10)
    refused = await BatchPublisher(producer).publish(_records([b"a", b"x" * 11, b"b"]))  # type: ignore[arg-type]
    assert [r.size for r in refused] == [11]
    assert sorted(producer.acked) == [b"a", b"b"]


async def test_retriable_errors_are_retried_permanent_ones_are_not() -> None:
    producer = FakeProducer()
    producer.down = 2  # the first two batch sends fail with a connection error
    stop = asyncio.Event()
    policy = RetryPolicy(start_s=0.01, max_s=0.02)
    refused = await publish_with_retries(BatchPublisher(producer), _records([b"a", POISON]), stop, policy)  # type: ignore[arg-type]
    assert refused is not None and [r.size for r in refused] == [len(POISON)]
    assert producer.acked == [b"a"]
    assert producer.down == 0
