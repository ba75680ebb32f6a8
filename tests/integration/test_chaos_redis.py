"""Chaos: while a worker consumes, hypothesis-chosen garbage lands in users' Redis keys and Redis restarts.

Each example streams a third of its events, restarts Redis (empty), streams the second third,
then damages random users' window and state keys (random bytes, truncated blobs, keys of the
wrong type, deleted keys) and streams the rest. The worker must never exit, every valid event
must get a prediction, and every damaged user whose damage the worker must read is rebuilt,
with a WARNING naming its (pseudonymised) key and the rejected-data metric above zero.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.models import generated_histories, publish_model
from support.streams import Captured, Running, TopicReader, event_payloads, interleaved, predicted_ids, produce

from stream.contracts import Event
from stream.store.keys import UserKeys
from stream.worker.untrusted import StoredKey, logged_key
from tools.devinfra.broker import create_topics
from tools.devinfra.redis_server import RedisServer

WAIT_S = 60.0
USERS = 10
# What is done to one user's keys. Each but "delete" is seen by the worker at the user's next
# event: a wrong-typed key by the append script, a window row because the state goes with it
# (the next event is rebuilt from the window), a state blob because its seq no longer matches
# the one the worker holds.
ACTIONS = ("window_bytes", "window_wrong_type", "state_bytes", "state_truncated", "state_wrong_type", "delete")

chaos_plans = st.lists(
    st.tuples(st.integers(0, USERS - 1), st.sampled_from(ACTIONS), st.binary(min_size=0, max_size=64)),
    min_size=1,
    max_size=6,
    unique_by=lambda action: action[0],
).filter(lambda plan: any(kind != "delete" for _, kind, _ in plan))


async def _damage(url: str, prefix: str, user: str, kind: str, garbage: bytes) -> None:
    keys = UserKeys.of(prefix, user)
    client = aioredis.from_url(url)
    try:
        if kind == "window_bytes":
            await client.rpush(keys.window, garbage)
            await client.delete(keys.state)
        elif kind == "window_wrong_type":
            await client.delete(keys.window)
            await client.set(keys.window, garbage)
        elif kind in ("state_bytes", "state_truncated"):
            blob = await client.hget(keys.state, "blob") or b""
            bad = garbage if kind == "state_bytes" else blob[: len(garbage) % max(len(blob), 1)]
            await client.hset(keys.state, mapping={"blob": bad, "seq": 0})  # seq 0: the worker holds another
        elif kind == "state_wrong_type":
            await client.delete(keys.state)
            await client.rpush(keys.state, garbage or b"x")
        else:
            await client.delete(*keys.all())
    finally:
        await client.aclose()


async def _until_predicted(running: Running, reader: TopicReader, wanted: set[str]) -> list[bytes]:
    deadline = time.monotonic() + WAIT_S
    while True:
        values = await reader.poll()
        if predicted_ids(values) >= wanted:
            return values
        assert running.alive(), f"the worker exited: {running.task!r}"
        assert time.monotonic() < deadline, f"{len(wanted - predicted_ids(values))} events never predicted"


async def _scenario(base: Any, redis_server: RedisServer, plan: list[tuple[int, str, bytes]]) -> None:
    name = f"chaos{uuid.uuid4().hex[:8]}"
    topics = {"events": f"{name}.events", "predictions": f"{name}.predictions", "dlq": f"{name}.dlq"}
    await create_topics(base.kafka_bootstrap, dict.fromkeys([*topics.values(), f"{name}.models"], 3))
    settings = base.model_copy(
        update={
            "topic_events": topics["events"],
            "topic_predictions": topics["predictions"],
            "topic_dlq": topics["dlq"],
            "topic_models": f"{name}.models",
            "consumer_group": name,
            "redis_key_prefix": name,
        }
    )
    histories = [h for h in generated_histories(users=40, seed=13, max_len=30) if len(h) >= 9][:USERS]
    thirds: list[list[Event]] = [
        interleaved([h[i * len(h) // 3 : (i + 1) * len(h) // 3] for h in histories]) for i in range(3)
    ]
    reader = TopicReader(settings.kafka_bootstrap, settings.topic_predictions)
    with Captured() as logs:
        running = Running(settings)
        try:
            await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(thirds[0]))
            await _until_predicted(running, reader, {e.event_id for e in thirds[0]})
            await asyncio.to_thread(redis_server.restart)  # empty: every history starts again
            await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(thirds[1]))
            await _until_predicted(running, reader, {e.event_id for e in thirds[1]})
            for index, kind, garbage in plan:
                await _damage(settings.redis_url, settings.redis_key_prefix, histories[index][0].user_id, kind, garbage)
            await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(thirds[2]))
            values = await _until_predicted(running, reader, {e.event_id for e in thirds[2]})
            assert running.alive()
        finally:
            await running.close()
            await reader.close()
    assert predicted_ids(values) == {e.event_id for third in thirds for e in third}
    rejected = sum(
        running.metric("demandstream_worker_stored_data_rejected_total", {"key": key, "reason": reason})
        for key in ("window", "state")
        for reason in ("undecodable", "format", "shape", "values", "entry", "wrong_type")
    )
    assert rejected > 0
    corrupt = running.metric("demandstream_worker_state_rebuilds_total", {"reason": "corrupt"})
    events = sum(map(len, thirds))
    print(
        f"chaos {[(i, kind) for i, kind, _ in plan]}: {events} events, {len(values)} predictions, "
        f"{rejected:.0f} rejected values, {corrupt:.0f} corrupt rebuilds"
    )
    warned = "\n".join(line for line in logs.lines if line.startswith("WARNING") and "user rebuilt" in line)
    for index, kind, _ in plan:
        if kind == "delete":
            continue
        key = StoredKey.STATE if kind.startswith("state") else StoredKey.WINDOW
        if kind == "window_wrong_type" or kind == "state_wrong_type":
            key = StoredKey.STATE if kind == "state_wrong_type" else StoredKey.WINDOW
        user = histories[index][0].user_id
        assert logged_key(name, user, key, pseudonymised=False) in warned, (kind, user)


_published: set[Path] = set()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@settings(max_examples=4, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(plan=chaos_plans)
async def test_chaos_in_redis_never_stops_the_worker(
    settings_factory: Any, redis_server: RedisServer, plan: list[tuple[int, str, bytes]]
) -> None:
    # Nothing held between batches: every batch loads its users, so the garbage is read (a worker
    # holding its users writes Redis without reading it; the next owner's load meets the garbage,
    # which test_faults_stored.py and the unit tests of the load cover).
    base = settings_factory(batch_max_size=16, batch_linger_ms=0, worker_max_held_users=0)
    if base.model_registry not in _published:  # one model per test, not per example
        await asyncio.to_thread(publish_model, base.model_registry, "v1", seed=1)
        _published.add(base.model_registry)
    await asyncio.wait_for(_scenario(base, redis_server, plan), 120)
