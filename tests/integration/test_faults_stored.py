"""Fault injection: the worker's own Redis data is corrupted between two halves of a stream.

Stored values are untrusted (docs/reliability.md): a corrupt window row, a truncated or
misshapen state blob, or a key of the wrong type must not crash the worker (on main before
issue 14 the first corrupt row crashed it, and again on every replay of the batch). The
corrupted users are rebuilt from what still decodes, every event is predicted, and a metric
and a WARNING say which key was bad and why.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import numpy as np
import redis.asyncio as aioredis
from support.models import generated_histories, publish_model
from support.streams import Captured, Running, TopicReader, event_payloads, interleaved, predicted_ids, produce

from stream.contracts import Event
from stream.store.keys import UserKeys
from stream.worker.state_codec import ModelState, encode_state
from stream.worker.window_codec import WindowRow

WAIT_S = 60.0


async def _until_predicted(running: Running, reader: TopicReader, wanted: set[str]) -> list[bytes]:
    """Read predictions until every id in ``wanted`` has one; fail at once if the worker died."""
    deadline = time.monotonic() + WAIT_S
    while True:
        values = await reader.poll()
        if predicted_ids(values) >= wanted:
            return values
        if not running.alive():
            raise AssertionError(f"the worker exited: {running.task.exception()!r}")
        assert time.monotonic() < deadline, f"{len(wanted - predicted_ids(values))} events never predicted"


async def _corrupt(url: str, prefix: str, users: list[str]) -> dict[str, str]:
    """One kind of damage per user; returns user -> what was done."""
    client = aioredis.from_url(url)
    done: dict[str, str] = {}
    try:
        keys = [UserKeys.of(prefix, user) for user in users]
        # 1. an undecodable row (valid entry header, random row bytes) + a truncated entry; the
        #    state goes too, so that the next event is rebuilt from this window.
        entry = (await client.lrange(keys[0].window, 0, 0))[0]
        header_len = 18 + int.from_bytes(entry[16:18], "big")
        await client.lset(keys[0].window, 0, entry[:header_len] + b"\xc1\xff\x00garbage")
        await client.rpush(keys[0].window, b"\x00\x01short")
        await client.delete(keys[0].state)
        done[users[0]] = "undecodable row + truncated entry"
        # 2. a row of a type the featurizer does not know (a KeyError on main)
        bogus = msgspec.msgpack.encode(WindowRow(type="teleport", ts=1))
        entry = (await client.lrange(keys[1].window, -1, -1))[0]
        header_len = 18 + int.from_bytes(entry[16:18], "big")
        await client.lset(keys[1].window, -1, entry[:header_len] + bogus)
        await client.delete(keys[1].state)
        done[users[1]] = "unknown row type"
        # 3. a truncated state blob
        blob = await client.hget(keys[2].state, "blob")
        await client.hset(keys[2].state, "blob", blob[: len(blob) // 2])
        done[users[2]] = "truncated state"
        # 4. a state of the serving version but another hidden size
        version = msgspec.msgpack.decode(blob)[1]
        seq = int(await client.hget(keys[3].state, "seq"))
        odd = ModelState(version, seq, np.zeros(7), np.zeros(7), np.zeros(12), np.zeros(12), np.zeros(12))
        await client.hset(keys[3].state, "blob", encode_state(odd))
        done[users[3]] = "hidden size 7"
        # 5. the window key holds a string; 6. the state key holds a list
        await client.delete(keys[4].window)
        await client.set(keys[4].window, b"not a list")
        await client.delete(keys[5].state)
        await client.rpush(keys[5].state, b"not a hash")
        done[users[4]], done[users[5]] = "window is a string", "state is a list"
        # 7. the whole window is random bytes (entries too short to hold a header)
        await client.delete(keys[6].window, keys[6].state)
        await client.rpush(keys[6].window, b"\x00", b"\xff" * 5)
        done[users[6]] = "random entries"
        return done
    finally:
        await client.aclose()


async def test_corrupt_stored_data_is_rebuilt_not_a_crash(settings_factory: Any) -> None:
    # No state cache: the worker would keep stepping the states it holds itself (Redis does not
    # send a blob whose seq the worker holds), as a restarted worker could not.
    settings = settings_factory(batch_max_size=32, batch_linger_ms=0, worker_max_held_users=0)
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    histories = generated_histories(users=20, seed=7, max_len=30)
    histories = [h for h in histories if len(h) >= 6][:8]
    assert len(histories) == 8
    first: list[Event] = interleaved([h[: len(h) // 2] for h in histories])
    second: list[Event] = interleaved([h[len(h) // 2 :] for h in histories])
    users = [h[0].user_id for h in histories]
    reader = TopicReader(settings.kafka_bootstrap, settings.topic_predictions)
    with Captured() as logs:
        running = Running(settings)
        try:
            await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(first))
            await _until_predicted(running, reader, {e.event_id for e in first})
            damage = await _corrupt(settings.redis_url, settings.redis_key_prefix, users[:7])
            started = time.monotonic()
            await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(second))
            values = await _until_predicted(running, reader, {e.event_id for e in second})
            recovered_s = time.monotonic() - started
            assert running.alive()
        finally:
            await running.close()
            await reader.close()

    assert predicted_ids(values) == {e.event_id for e in first + second}
    assert running.worker.records_done == len(first) + len(second)
    rejected = {
        (key, reason): running.metric("demandstream_worker_stored_data_rejected_total", {"key": key, "reason": reason})
        for key, reason in [
            ("window", "undecodable"),
            ("window", "values"),
            ("window", "entry"),
            ("window", "wrong_type"),
            ("state", "undecodable"),
            ("state", "shape"),
            ("state", "wrong_type"),
        ]
    }
    assert all(count >= 1 for count in rejected.values()), sorted(rejected.items())
    assert running.metric("demandstream_worker_state_rebuilds_total", {"reason": "corrupt"}) >= 4
    warnings = [line for line in logs.lines if line.startswith("WARNING") and "user rebuilt" in line]
    assert len(warnings) >= 7, warnings
    # The log names the key without the user id (pseudonymisation off: a SHA-256 prefix).
    assert not any(user in line for user in users for line in warnings)
    assert all(f"{settings.redis_key_prefix}:{{sha256:" in line for line in warnings)
    assert not any(line.startswith(("ERROR", "CRITICAL")) for line in logs.lines)
    print(f"damage {damage}; rejected {rejected}; second half {len(second)} events in {recovered_s:.2f}s")


async def test_one_corrupt_window_row_is_not_a_poison_pill(settings_factory: Any) -> None:
    """The review's case: one undecodable row in a window that must be read (no usable state)."""
    settings = settings_factory(batch_max_size=8, batch_linger_ms=0, worker_max_held_users=0)
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    history = next(h for h in generated_histories(users=20, seed=7, max_len=30) if len(h) >= 6)
    first, second = history[: len(history) // 2], history[len(history) // 2 :]
    reader = TopicReader(settings.kafka_bootstrap, settings.topic_predictions)
    running = Running(settings)
    try:
        await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(first))
        await _until_predicted(running, reader, {e.event_id for e in first})
        keys = UserKeys.of(settings.redis_key_prefix, history[0].user_id)
        client = aioredis.from_url(settings.redis_url)
        try:
            entry = (await client.lrange(keys.window, 0, 0))[0]
            header_len = 18 + int.from_bytes(entry[16:18], "big")
            await client.lset(keys.window, 0, entry[:header_len] + b"\xc1")  # 0xc1: never valid msgpack
            await client.delete(keys.state)
        finally:
            await client.aclose()
        await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(second))
        values = await _until_predicted(running, reader, {e.event_id for e in second})
        assert running.alive()
    finally:
        await running.close()
        await reader.close()
    assert predicted_ids(values) == {e.event_id for e in history}
    labels = {"key": "window", "reason": "undecodable"}
    assert running.metric("demandstream_worker_stored_data_rejected_total", labels) == 1
    assert running.metric("demandstream_worker_state_rebuilds_total", {"reason": "missing"}) >= 2
