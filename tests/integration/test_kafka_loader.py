"""Replaying the events topic of a real (tansu) broker: every valid event, bad records named by
partition and offset, and a clear error for a topic that does not exist."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from stream.config import Settings
from stream.contracts import Event, encode_event
from training.data import BadRows, DataFormatError, KafkaReplayError, iter_kafka, load_kafka

N_USERS = 7
N_EVENTS = 700


class Topics(Protocol):
    events: str
    partitions: int


async def _publish(settings: Settings, payloads: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        # Batched produce on purpose: it is what makes tansu's end offsets unreliable.
        futures = [
            await producer.send(settings.topic_events, value, key=key.encode())
            for key, value in payloads
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()


def _events() -> list[Event]:
    return [
        Event(f"e{i}", f"u{i % N_USERS}", 1_700_000_000_000 + i, "view", category_id=f"c{i % 5}")
        for i in range(N_EVENTS)
    ]


@pytest.mark.partitions(3)
async def test_replay_reads_every_event_and_names_bad_records(
    settings_factory: Callable[..., Settings], topics: Topics
) -> None:
    settings = settings_factory()
    events = _events()
    payloads = [(e.user_id, encode_event(e)) for e in events]
    payloads.insert(100, ("u1", b'{"event_id":"x","user_id":"u1","ts":1,"type":"view"}'))
    payloads.insert(200, ("u2", b"not json"))
    await _publish(settings, payloads)

    sink = BadRows(strict=False)
    replayed = [e async for e in load_kafka(settings, bad_rows=sink, idle_s=0.5)]
    assert sorted(replayed, key=lambda e: e.ts) == events
    assert sink.count == 2
    assert all(err.source.startswith(f"kafka:{topics.events}[") for err in sink.examples)
    assert sorted(err.reason.split(":")[0] for err in sink.examples) == [
        "malformed_json",
        "ts_out_of_range",
    ]
    by_user: dict[str, list[int]] = {}
    for event in replayed:  # key = user, so one user's events keep their order
        by_user.setdefault(event.user_id, []).append(event.ts)
    assert all(ts == sorted(ts) for ts in by_user.values())

    with pytest.raises(DataFormatError, match=rf"kafka:{topics.events}\[\d\]:\d+: "):
        [e async for e in load_kafka(settings, idle_s=0.5)]


@pytest.mark.partitions(2)
async def test_sync_replay_matches_and_unknown_topic_is_an_error(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    events = _events()[:50]
    await _publish(settings, [(e.user_id, msgspec.json.encode(e)) for e in events])
    replayed = list(iter_kafka(settings, idle_s=0.5))
    assert sorted(replayed, key=lambda e: e.ts) == events
    with pytest.raises(KafkaReplayError, match="does not exist"):
        list(iter_kafka(settings, "no.such.topic", idle_s=0.5))
