"""Fault injection: the Kafka broker is missing at start-up, or restarts under load.

Each test runs its own tansu broker on a fixed port (the session broker stays untouched). tansu
keeps everything in memory here: a restarted broker is EMPTY (no topics, no records, no committed
offsets, no groups). What a restart can show with it is therefore the worker's side: it survives
the outage, logs it, keeps retrying, and serves the new broker once it is back, without anyone
touching it. Records a real (persistent) Kafka would still hold cannot be checked against tansu;
the at-least-once argument for them is the commit-after-acknowledge rule (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from support.models import generated_histories, publish_model
from support.streams import (
    Captured,
    Running,
    event_payloads,
    interleaved,
    predicted_ids,
    predictions_until,
    predicts_all,
    produce,
)

from stream.config import Settings
from tools.devinfra.broker import TansuBroker, create_topics
from tools.devinfra.processes import free_port


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[TansuBroker]:
    """A private tansu on a fixed port, NOT started; always stopped at the end."""
    broker = TansuBroker(free_port(), workdir=tmp_path / "tansu")
    try:
        yield broker
    finally:
        broker.stop()


async def _make_topics(settings: Settings) -> None:
    names = (settings.topic_events, settings.topic_predictions, settings.topic_dlq)
    await create_topics(settings.kafka_bootstrap, dict.fromkeys(names, settings.topic_partitions))


async def test_broker_missing_at_start_up_then_appears(settings_factory: Any, own_broker: TansuBroker) -> None:
    settings = settings_factory(kafka_bootstrap=own_broker.bootstrap, batch_max_size=16, batch_linger_ms=0)
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    events = interleaved(generated_histories(users=6, seed=4, max_len=15))
    with Captured() as logs:
        running = Running(settings)
        try:
            await running.until(
                lambda: sum("Kafka unreachable" in line for line in logs.lines) >= 2, what="start-up retries"
            )
            assert running.alive(), "the worker must wait for the broker, not exit"
            checks = await running.worker.readiness()
            assert checks["kafka"] is False and checks["model"]

            await own_broker.start()
            await _make_topics(settings)
            await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events))
            values = await predictions_until(settings, predicts_all(events))
            assert (await running.worker.readiness())["kafka"]
        finally:
            await running.close()
    assert predicted_ids(values) == {e.event_id for e in events}
    retry_lines = [line for line in logs.lines if "Kafka unreachable" in line]
    assert all(line.startswith("WARNING") and own_broker.bootstrap in line for line in retry_lines), retry_lines[:3]
    assert any("connected to Kafka" in line for line in logs.lines)


async def test_broker_restarted_under_load(settings_factory: Any, own_broker: TansuBroker) -> None:
    settings = settings_factory(kafka_bootstrap=own_broker.bootstrap, batch_max_size=16, batch_linger_ms=0)
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    before = interleaved(generated_histories(users=10, seed=6, max_len=40))
    # Few new events: each partition's new log must end below where the worker had got to before
    # the outage. A commit landing on the restarted (empty) tansu inside its new log would otherwise
    # be a legitimate-looking offset and the records below it would be skipped; a commit past the
    # end is caught (test_committed_offsets_past_the_log_end_are_reread). Real Kafka keeps its log.
    after = [
        msgspec.structs.replace(e, event_id="after-" + e.event_id)
        for e in interleaved(generated_histories(users=10, seed=7, max_len=4))
    ]
    await own_broker.start()
    await _make_topics(settings)
    with Captured() as logs:
        running = Running(settings)
        try:
            await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(before))
            await predictions_until(settings, lambda values: len(values) >= len(before) // 2)

            own_broker.stop()  # under load: the worker is mid-stream; tansu forgets everything
            await running.until(lambda: not running.worker._kafka_ok, what="the worker to notice the outage")
            assert running.alive()
            assert (await running.worker.readiness())["kafka"] is False

            await own_broker.start()  # same address, empty
            await _make_topics(settings)
            await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(after))
            values = await predictions_until(settings, predicts_all(after))
            assert running.alive()
            assert (await running.worker.readiness())["kafka"]
        finally:
            await running.close()
    # Every new event is predicted; anything else on the new broker is a `before` event whose batch was
    # in flight during the outage and was re-published once the broker was back (at-least-once).
    assert predicted_ids(values) - {e.event_id for e in after} <= {e.event_id for e in before}
    assert any(line.startswith("WARNING") and "Kafka at" in line and "unreachable" in line for line in logs.lines)
    assert any("reachable again" in line for line in logs.lines)


async def test_committed_offsets_past_the_log_end_are_reread(settings_factory: Any) -> None:
    """A group whose commits point past the log (a broker that lost records) still gets every event.

    Kafka would answer OFFSET_OUT_OF_RANGE; tansu answers an empty fetch, so without the worker's
    own check it would wait at the stale offset and skip everything below it.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    settings = settings_factory(batch_max_size=16, batch_linger_ms=0)
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    events = interleaved(generated_histories(users=5, seed=9, max_len=8))
    await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events))
    stale = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=settings.consumer_group)
    await stale.start()
    try:
        partitions = [TopicPartition(settings.topic_events, p) for p in range(settings.topic_partitions)]
        stale.assign(partitions)
        await stale.commit({tp: OffsetAndMetadata(10_000, "") for tp in partitions})
    finally:
        await stale.stop()
    with Captured() as logs:
        running = Running(settings)
        try:
            values = await predictions_until(settings, predicts_all(events))
        finally:
            await running.close()
    assert predicted_ids(values) == {e.event_id for e in events}
    assert any("past the log end" in line and line.startswith("WARNING") for line in logs.lines)
