"""The stream worker end to end against the real tansu broker and a private Redis."""

from __future__ import annotations

import asyncio
import base64
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition
from support import streams
from support.models import generated_histories, publish_model
from support.streams import Running, event_payloads, interleaved, produce, worker_env

from stream.contracts import DeadLetter, Prediction
from stream.registry import ModelRegistry
from stream.store.keys import decode_entry
from stream.store.redis_backing import fence_epoch_key
from stream.worker.web import make_app
from tools.devinfra.broker import create_topics

INVALID = [b"not json", b'{"user_id":"u","ts":1700000000000,"type":"view"}',
           b'{"event_id":"e","user_id":"u","ts":1700000000000,"type":"teleport"}', b'{"event_id":"\xff"}']  # fmt: skip
WAIT_S = 60.0
read_topic = partial(streams.read_topic, timeout_s=WAIT_S)


async def snapshot(url: str, prefix: str) -> dict[str, Any]:
    """Every user key of a worker's prefix with its value (windows, meta, states), fences left out.

    A worker claims each user it loads (meta's ``fence`` field); that is ownership, not data.
    """
    client = aioredis.from_url(url)
    try:
        out: dict[str, Any] = {}
        async for key in client.scan_iter(match=f"{prefix}:*"):
            if key.decode() == fence_epoch_key(prefix):
                continue
            kind = await client.type(key)
            value = await (client.lrange(key, 0, -1) if kind == b"list" else client.hgetall(key))
            if isinstance(value, dict):
                value.pop(b"fence", None)
            out[key.decode()] = value
        return out
    finally:
        await client.aclose()


@pytest.fixture
async def registry(settings_factory: Any) -> AsyncIterator[ModelRegistry]:
    root = settings_factory().model_registry
    await asyncio.to_thread(publish_model, root, "v1", seed=1)
    yield ModelRegistry(root)


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: (await consumer.committed(TopicPartition(topic, p))) or 0 for p in range(partitions)}
    finally:
        await consumer.stop()


async def test_valid_invalid_counts_offsets_and_replay(
    settings_factory: Any, registry: ModelRegistry, redis_server: Any
) -> None:
    settings = settings_factory(batch_max_size=32)
    events = interleaved(generated_histories(users=8, seed=11, max_len=15))
    payloads = event_payloads(events)
    for n, bad in enumerate(INVALID):
        payloads.insert(3 * n + 1, (f"bad{n}".encode(), bad))
    await produce(settings.kafka_bootstrap, settings.topic_events, payloads)

    running = Running(settings)
    predictions = [
        msgspec.json.decode(v, type=Prediction)
        for v in await read_topic(settings.kafka_bootstrap, settings.topic_predictions, len(events))
    ]
    letters = [
        msgspec.json.decode(v, type=DeadLetter)
        for v in await read_topic(settings.kafka_bootstrap, settings.topic_dlq, len(INVALID), settle_s=0.2)
    ]
    await running.close()

    assert sorted(p.event_id for p in predictions) == sorted(e.event_id for e in events)
    assert {p.model_version for p in predictions} == {"v1"}
    assert all(p.demand and 0 <= p.purchase_intent <= 1 and p.history_len >= 1 for p in predictions)
    assert sorted(base64.b64decode(d.payload_b64) for d in letters) == sorted(INVALID)
    assert all(d.reason and d.source_topic == settings.topic_events and d.source_offset >= 0 for d in letters)
    offsets = await committed(
        settings.kafka_bootstrap, settings.consumer_group, settings.topic_events, settings.topic_partitions
    )
    assert sum(offsets.values()) == len(payloads)
    assert running.worker.metrics.registry.get_sample_value("demandstream_worker_predictions_out_total") == len(events)

    # Replay everything through a new consumer group: no window or state may change.
    before = await snapshot(redis_server.url, settings.redis_key_prefix)
    replay = Running(settings.model_copy(update={"consumer_group": settings.consumer_group + "-replay"}))
    again = await read_topic(settings.kafka_bootstrap, settings.topic_predictions, 2 * len(events))
    await replay.close()
    assert len(again) == 2 * len(events)
    assert await snapshot(redis_server.url, settings.redis_key_prefix) == before
    replayed = [msgspec.json.decode(v, type=Prediction) for v in again[len(events) :]]
    assert all(p.history_len >= 1 for p in replayed)


async def test_holding_users_in_process_changes_no_prediction(settings_factory: Any, registry: ModelRegistry) -> None:
    cached = settings_factory(batch_max_size=8)
    uncached = cached.model_copy(
        update={
            "worker_max_held_users": 0,
            "consumer_group": cached.consumer_group + "-nc",
            "redis_key_prefix": cached.redis_key_prefix + "-nc",
            "topic_predictions": cached.topic_predictions + "-nc",
        }
    )
    await create_topics(cached.kafka_bootstrap, {uncached.topic_predictions: cached.topic_partitions})
    events = interleaved(generated_histories(users=6, seed=21, max_len=30))
    await produce(cached.kafka_bootstrap, cached.topic_events, event_payloads(events))
    runs: list[tuple[dict[str, Prediction], float]] = []
    for settings in (cached, uncached):
        running = Running(settings)
        values = await read_topic(settings.kafka_bootstrap, settings.topic_predictions, len(events))
        hits = running.metric("demandstream_worker_state_cache_hits_total")
        await running.close()
        predictions = [msgspec.json.decode(v, type=Prediction) for v in values]
        runs.append(({p.event_id: p for p in predictions}, hits))
    (with_cache, hits), (without_cache, no_hits) = runs
    assert hits > 0 and no_hits == 0
    assert with_cache.keys() == without_cache.keys() == {e.event_id for e in events}
    for event_id, got in with_cache.items():
        want = without_cache[event_id]
        assert [d.category_id for d in got.demand] == [d.category_id for d in want.demand]
        assert [d.score for d in got.demand] == pytest.approx([d.score for d in want.demand], rel=1e-5)
        assert got.purchase_intent == pytest.approx(want.purchase_intent, rel=1e-5)


@pytest.mark.partitions(3)
async def test_two_workers_share_the_load_in_user_order(settings_factory: Any, registry: ModelRegistry) -> None:
    settings = settings_factory(batch_max_size=16)
    first, second = Running(settings), Running(settings)
    await asyncio.gather(first.wait_assigned(), second.wait_assigned())
    await asyncio.sleep(1.0)  # let the group settle after the second join
    events = interleaved(generated_histories(users=24, seed=3, max_len=20))
    await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events))
    values = await read_topic(settings.kafka_bootstrap, settings.topic_predictions, len(events))
    await asyncio.gather(first.close(), second.close())

    predictions = [msgspec.json.decode(v, type=Prediction) for v in values]
    assert sorted(p.event_id for p in predictions) == sorted(e.event_id for e in events)
    assert first.worker.records_done > 0 and second.worker.records_done > 0
    for user in {e.user_id for e in events}:
        sent = [e.event_id for e in events if e.user_id == user]
        assert [p.event_id for p in predictions if p.user_id == user] == sent


@pytest.mark.partitions(3)
async def test_a_worker_joining_mid_stream_takes_over_cleanly(settings_factory: Any, registry: ModelRegistry) -> None:
    # Batches in flight, states cached and publishes overlapping the next batch when the group
    # rebalances: the old owner must finish and commit, and the new owner must not trust a cache.
    settings = settings_factory(batch_max_size=8)
    events = interleaved(generated_histories(users=24, seed=5, max_len=30))
    half = len(events) // 2
    first = Running(settings)
    await first.wait_assigned()
    await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events[:half]))
    await first.until(lambda: first.worker.records_done >= half // 4, what="a quarter of the first half")
    second = Running(settings)
    await second.wait_assigned()
    await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events[half:]))
    values = await read_topic(settings.kafka_bootstrap, settings.topic_predictions, len(events))
    await asyncio.gather(first.close(), second.close())

    assert second.worker.records_done > 0, "the second worker got no partition: nothing was tested"
    predictions = [msgspec.json.decode(v, type=Prediction) for v in values]
    assert {p.event_id for p in predictions} == {e.event_id for e in events}
    for user in {e.user_id for e in events}:
        sent = [e.event_id for e in events if e.user_id == user]
        firsts = list(dict.fromkeys(p.event_id for p in predictions if p.user_id == user))
        assert firsts == sent  # in event order, replays (if any) aside
        # Each first prediction saw exactly the user's events so far: no event lost or doubled in
        # the window across the handover.
        lengths = {p.event_id: p.history_len for p in reversed(predictions) if p.user_id == user}
        assert [lengths[event_id] for event_id in sent] == list(range(1, len(sent) + 1))


async def test_hot_reload_and_corrupt_model_refused(settings_factory: Any, registry: ModelRegistry) -> None:
    settings = settings_factory(model_poll_interval_s=0.2)
    await asyncio.to_thread(publish_model, registry.root, "v2", seed=2, promote=False)
    await asyncio.to_thread(publish_model, registry.root, "v3", seed=3, promote=False)
    histories = generated_histories(users=6, seed=21, max_len=30)
    running = Running(settings)
    sent = 0

    async def stream(part: slice) -> list[Prediction]:
        nonlocal sent
        events = [e for h in histories for e in h[part]]
        await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events))
        sent += len(events)
        values = await read_topic(settings.kafka_bootstrap, settings.topic_predictions, sent, settle_s=0.3)
        # Select this part's predictions by event id: a read across partitions is not in time order.
        ids = {e.event_id for e in events}
        decoded = [msgspec.json.decode(v, type=Prediction) for v in values]
        return [p for p in decoded if p.event_id in ids]

    assert {p.model_version for p in await stream(slice(0, 3))} == {"v1"}
    registry.promote("v2")
    await _until(lambda: running.worker.model is not None and running.worker.model.version == "v2")
    assert {p.model_version for p in await stream(slice(3, 6))} == {"v2"}

    registry.promote("v3")  # verified here, then corrupted before any worker could load it
    model_file = registry.version_dir("v3") / "model.onnx"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 16] = bytes(16)
    model_file.write_bytes(bytes(data))
    metrics = running.worker.metrics.registry
    await _until(
        lambda: metrics.get_sample_value("demandstream_worker_model_reloads_total", {"outcome": "refused"}) == 1
    )
    assert {p.model_version for p in await stream(slice(6, 9))} == {"v2"}
    assert metrics.get_sample_value("demandstream_worker_model_reloads_total", {"outcome": "refused"}) == 1

    async with TestClient(TestServer(make_app(running.worker))) as client:
        ready = await client.get("/readyz")
        assert ready.status == 200 and (await ready.json())["model_version"] == "v2"
        text = await (await client.get("/metrics")).text()
        assert 'demandstream_worker_model_info{version="v2"} 1.0' in text
        assert "demandstream_worker_e2e_latency_seconds_bucket" in text
    await running.close()


async def _until(condition: Any, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.05)


async def test_sigkill_mid_stream_then_restart(
    settings_factory: Any, registry: ModelRegistry, redis_server: Any, tmp_path: Path
) -> None:
    settings = settings_factory(batch_max_size=8, batch_linger_ms=0)
    events = interleaved(generated_histories(users=20, seed=8, max_len=40))
    await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events))
    command = [str(Path(sys.executable).parent / "demandstream"), "worker"]
    log = (tmp_path / "worker.log").open("wb")
    victim = subprocess.Popen(command, env=worker_env(settings), stdout=log, stderr=subprocess.STDOUT)
    try:
        seen = await read_topic(settings.kafka_bootstrap, settings.topic_predictions, len(events) // 4, settle_s=0)
        assert len(seen) >= len(events) // 4, "the worker subprocess never got going"
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    finally:
        if victim.poll() is None:
            victim.kill()
        log.close()
    early = len(await read_topic(settings.kafka_bootstrap, settings.topic_predictions, 0, timeout_s=0.5, settle_s=0))
    assert early < len(events), "the worker finished before it was killed: nothing was tested"

    survivor = Running(settings)
    values = await read_topic(settings.kafka_bootstrap, settings.topic_predictions, len(events))
    await survivor.close()
    predicted = {msgspec.json.decode(v, type=Prediction).event_id for v in values}
    assert predicted == {e.event_id for e in events}
    state = await snapshot(redis_server.url, settings.redis_key_prefix)
    for key, entries in state.items():
        if key.endswith(":w"):
            ids = [decode_entry(entry)[2] for entry in entries]
            assert len(ids) == len(set(ids)), key
