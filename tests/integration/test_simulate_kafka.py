"""The simulator produces to a real (tansu) broker: every record arrives, keyed by user."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from itertools import islice
from typing import Protocol

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from stream.config import Settings
from stream.contracts import Event, EventDecoder, InvalidEvent
from stream.kafka_options import kafka_options
from tools.simulate import ShopperSimulator, records
from tools.simulate.output import KafkaSink, send_records

N_EVENTS = 3000


class Topics(Protocol):
    """What this test reads of the conftest's ``topics`` fixture."""

    events: str
    partitions: int


async def _consume_all(
    settings_bootstrap: str, topic: str, partitions: int, expected: int
) -> list[ConsumerRecord]:
    # No group, explicit assignment: tansu's end offsets are unreliable, so read until `expected`
    # records have come (the deadline only turns a hang into a failure).
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings_bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        received: list[ConsumerRecord] = []
        deadline = time.monotonic() + 60
        while len(received) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for batch in batches.values():
                received.extend(batch)
        return received
    finally:
        await consumer.stop()


async def test_simulator_produces_every_event_to_kafka_keyed_by_user(
    settings_factory: Callable[..., Settings], topics: Topics
) -> None:
    settings = settings_factory()
    assert kafka_options(settings)["bootstrap_servers"] == settings.kafka_bootstrap
    events = list(islice(ShopperSimulator(seed=21, users=200), N_EVENTS))
    sink = KafkaSink(settings, max_in_flight=500)
    try:
        summary = await send_records(records(events, malformed_fraction=0.02, seed=4), sink)
    finally:
        await sink.close()
    assert summary.sent == N_EVENTS

    received = await _consume_all(
        settings.kafka_bootstrap, topics.events, topics.partitions, N_EVENTS
    )
    assert len(received) == N_EVENTS

    decoder = EventDecoder(now_ms=lambda: events[-1].ts)
    valid: list[tuple[ConsumerRecord, Event]] = []
    invalid = 0
    partitions_of_user: dict[bytes, set[int]] = defaultdict(set)
    for record in received:
        partitions_of_user[record.key].add(record.partition)
        verdict = decoder.decode(record.value)
        if isinstance(verdict, InvalidEvent):
            invalid += 1
        else:
            valid.append((record, verdict))
    assert invalid == sum(summary.malformed.values()) > 0
    # Key = user id, so all of a user's events share one partition, in event-time order there.
    assert all(len(parts) == 1 for parts in partitions_of_user.values())
    assert all(record.key == event.user_id.encode() for record, event in valid)
    by_user: dict[str, list[int]] = defaultdict(list)
    for _record, event in sorted(valid, key=lambda pair: (pair[0].partition, pair[0].offset)):
        by_user[event.user_id].append(event.ts)
    assert all(ts == sorted(ts) for ts in by_user.values())
    sent_valid = {
        e.event_id: e
        for e, r in zip(events, records(events, 0.02, seed=4), strict=True)
        if not r.malformed
    }
    assert {event.event_id: event for _, event in valid} == sent_valid
    assert msgspec.json.decode(valid[0][0].value, type=Event) == valid[0][1]
