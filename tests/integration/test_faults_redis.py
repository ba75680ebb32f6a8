"""Fault injection: Redis is SIGKILLed mid-stream and comes back (empty) a few seconds later."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest
from support.models import generated_histories, publish_model
from support.streams import (
    Captured,
    Running,
    TopicReader,
    event_payloads,
    interleaved,
    predicted_ids,
    predictions_until,
    predicts_all,
    produce,
    redis_dump,
    window_duplicates,
)

from tools.devinfra.redis_server import RedisServer

OUTAGE_S = 4.0  # how long Redis stays down (the worker's backoff is capped at 5 s)


@pytest.mark.partitions(2)
async def test_redis_killed_mid_stream_then_restarted(settings_factory: Any, redis_server: RedisServer) -> None:
    settings = settings_factory(batch_max_size=16, batch_linger_ms=0)
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    events = interleaved(generated_histories(users=16, seed=5, max_len=40))
    half = len(events) // 2
    reader = TopicReader(settings.kafka_bootstrap, settings.topic_predictions)
    retry_log = re.compile(r"Redis unavailable, retrying the batch \(attempt (\d+)\)")
    with Captured() as logs:
        running = Running(settings)
        try:
            await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events[:half]))
            await reader.until(lambda values: len(values) >= half // 4)  # mid-stream
            assert (await running.worker.readiness())["redis"]

            redis_server.kill()
            await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events[half:]))
            await running.until(
                lambda: running.metric("demandstream_worker_redis_retries_total") >= 2, what="retries during outage"
            )
            checks = await running.worker.readiness()
            assert checks["redis"] is False and checks["model"] and checks["kafka"]
            assert running.metric("demandstream_worker_ready") == 0
            assert not any(rec.startswith("ERROR") for rec in logs.lines), "an outage is a warning, not a crash"
            await asyncio.sleep(OUTAGE_S)  # stay down a while; the worker keeps backing off meanwhile
            assert running.alive()
            during = running.metric("demandstream_worker_predictions_out_total")
            assert during < len(events), "everything was predicted before the outage: nothing was tested"

            await asyncio.to_thread(redis_server.start)
            values = await reader.until(lambda values: predicted_ids(values) >= {e.event_id for e in events})
            await running.until(lambda: running.worker._redis_ok, what="readiness to come back")
            assert all((await running.worker.readiness()).values())
            assert running.alive()
        finally:
            await running.close()
            await reader.close()

    # Every valid event has at least one prediction; the extra ones are replays (at-least-once).
    assert predicted_ids(values) == {e.event_id for e in events}
    assert running.worker.records_done == len(events)
    attempts = [int(m.group(1)) for line in logs.lines if (m := retry_log.search(line))]
    assert max(attempts, default=0) >= 2, attempts  # one batch retried again and again, not dropped
    assert any(line.startswith("WARNING") and "Redis unavailable" in line for line in logs.lines)
    dump = await redis_dump(redis_server.url, settings.redis_key_prefix)
    assert dump, "nothing was written after Redis came back"
    assert window_duplicates(dump) == {}
    assert all(0 < item["pttl"] <= settings.user_ttl_s * 1000 for item in dump.values())


async def test_shutdown_during_an_outage_commits_nothing(settings_factory: Any, redis_server: RedisServer) -> None:
    settings = settings_factory(batch_max_size=8, batch_linger_ms=0)
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    events = interleaved(generated_histories(users=4, seed=9, max_len=10))
    redis_server.kill()
    with Captured() as logs:
        running = Running(settings)
        try:
            await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events))
            await running.until(lambda: running.metric("demandstream_worker_redis_retries_total") >= 1, what="retry")
        finally:
            await running.close()  # must return although Redis never came back
    assert running.worker.records_done == 0
    assert running.metric("demandstream_worker_predictions_out_total") == 0
    assert any("left uncommitted" in line for line in logs.lines)
    await asyncio.to_thread(redis_server.start)

    # The abandoned records were not committed: a fresh worker of the same group gets all of them.
    again = Running(settings)
    try:
        values = await predictions_until(settings, predicts_all(events))
    finally:
        await again.close()
    assert predicted_ids(values) == {e.event_id for e in events}
    logging.getLogger(__name__).info("replayed %d predictions after the abandoned batch", len(values))
