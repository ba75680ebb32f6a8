"""State v2 against the real broker and Redis: a crashed owner's successor, and the fence.

The worker holds its partitions' users in process and writes them behind to Redis before each
commit (docs/redis-layout.md, "State v2"). These tests pin down what that must not break: a
worker that takes over after a SIGKILL predicts exactly what one uninterrupted worker predicts,
and a worker that lost its partition cannot overwrite the new owner's state.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from support import streams
from support.models import generated_histories, publish_model
from support.streams import Running, event_payloads, interleaved, produce, worker_env

from stream.config import Settings
from stream.contracts import Prediction, encode_event
from stream.registry import LoadedModel, ModelRegistry
from stream.store import Fenced, OwnedStore, RedisBacking
from stream.store.keys import UserKeys
from stream.worker.batch import BatchProcessor
from stream.worker.metrics import WorkerMetrics
from tools.devinfra.broker import create_topics

WAIT_S = 60.0
read_topic = partial(streams.read_topic, timeout_s=WAIT_S)


def _by_event(values: list[bytes]) -> dict[str, list[Prediction]]:
    out: dict[str, list[Prediction]] = {}
    for value in values:
        prediction = msgspec.json.decode(value, type=Prediction)
        out.setdefault(prediction.event_id, []).append(prediction)
    return out


def _assert_same(got: Prediction, want: Prediction) -> None:
    assert [d.category_id for d in got.demand] == [d.category_id for d in want.demand], got.event_id
    assert [d.score for d in got.demand] == pytest.approx([d.score for d in want.demand], abs=1e-6), got.event_id
    assert got.purchase_intent == pytest.approx(want.purchase_intent, abs=1e-6)
    assert got.history_len == want.history_len


async def test_a_new_owner_after_a_sigkill_predicts_what_one_worker_would(
    settings_factory: Any, tmp_path: Path
) -> None:
    settings = settings_factory(batch_max_size=8, batch_linger_ms=0)
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    events = interleaved(generated_histories(users=20, seed=8, max_len=40))
    await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events))

    # The reference: one worker, never interrupted, on its own group, keys and output topic.
    alone = settings.model_copy(
        update={
            "consumer_group": settings.consumer_group + "-alone",
            "redis_key_prefix": settings.redis_key_prefix + "-alone",
            "topic_predictions": settings.topic_predictions + "-alone",
        }
    )
    await create_topics(settings.kafka_bootstrap, {alone.topic_predictions: settings.topic_partitions})
    running = Running(alone)
    reference = _by_event(await read_topic(alone.kafka_bootstrap, alone.topic_predictions, len(events)))
    await running.close()
    assert reference.keys() == {e.event_id for e in events}
    assert all(len(p) == 1 for p in reference.values())

    # The old owner: a subprocess, SIGKILLed mid-stream (held users and all).
    command = [str(Path(sys.executable).parent / "demandstream"), "worker"]
    log = (tmp_path / "worker.log").open("wb")
    victim = subprocess.Popen(command, env=worker_env(settings), stdout=log, stderr=subprocess.STDOUT)
    try:
        seen = await read_topic(settings.kafka_bootstrap, settings.topic_predictions, len(events) // 3, settle_s=0)
        assert len(seen) >= len(events) // 3, "the worker subprocess never got going"
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
        log.close()
    before_kill = _by_event(
        await read_topic(settings.kafka_bootstrap, settings.topic_predictions, 0, timeout_s=0.5, settle_s=0)
    )
    assert len(before_kill) < len(events), "the worker finished before it was killed: nothing was tested"

    # The new owner loads what the old one wrote behind, and replays what it did not commit.
    survivor = Running(settings)
    crashed = _by_event(await read_topic(settings.kafka_bootstrap, settings.topic_predictions, len(events)))
    await survivor.close()
    assert crashed.keys() == reference.keys()
    remaining = [e.event_id for e in events if e.event_id not in before_kill]
    assert remaining, "nothing was left for the new owner"
    for event_id, predictions in crashed.items():  # both owners' predictions, replays included
        for prediction in predictions:
            _assert_same(prediction, reference[event_id][0])
    assert survivor.metric("demandstream_worker_user_loads_total") > 0


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


async def test_a_zombie_write_behind_is_refused_and_the_new_owner_state_survives(settings_factory: Any) -> None:
    settings: Settings = settings_factory()
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    model = LoadedModel.load(ModelRegistry(settings.model_registry), "v1")
    events = interleaved(generated_histories(users=6, seed=4, max_len=20))
    records = [Record("events", 0, i, e.user_id.encode(), encode_event(e)) for i, e in enumerate(events)]

    def worker() -> BatchProcessor:
        store = OwnedStore.from_settings(settings, RedisBacking(settings))
        return BatchProcessor(settings, store=store, model=lambda: model, metrics=WorkerMetrics())

    async def run(processor: BatchProcessor, batch: list[Record]) -> None:
        await processor.persist(await processor.process(batch))

    old, new = worker(), worker()
    half = len(records) // 2
    await old.partitions_assigned({("events", 0)})
    await run(old, records[: half // 2])
    delayed = await old.process(records[half // 2 : half])  # computed, not yet written behind ...
    await new.partitions_assigned({("events", 0)})  # ... when the partition moves (a higher epoch)
    await run(new, records[half // 2 :])

    client = aioredis.from_url(settings.redis_url)
    users = sorted({e.user_id for e in events})

    async def stored() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for user in users:
            keys = UserKeys.of(settings.redis_key_prefix, user)
            out[user] = (await client.lrange(keys.window, 0, -1), await client.hgetall(keys.state))
        return out

    try:
        before = await stored()
        with pytest.raises(Fenced) as fenced:
            await old.persist(delayed)
        assert fenced.value.partitions == {0} and fenced.value.users > 0
        assert await stored() == before
        last = {e.user_id: e.event_id for e in events}
        for user, (window, state) in before.items():  # the new owner's history, to the last event
            assert last[user].encode() in window[-1] and state
    finally:
        await client.aclose()
        await old.store.close()
        await new.store.close()
