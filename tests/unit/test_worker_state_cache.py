"""The worker's state cache: bounded, off at size 0, and emptied by every rebalance."""

from __future__ import annotations

import asyncio

import numpy as np
from aiokafka import TopicPartition

from stream.worker.offsets import FinishBatchOnRevoke
from stream.worker.state_cache import StateCache
from stream.worker.state_codec import ModelState


def state(seq: int) -> ModelState:
    zeros = np.zeros(4, dtype=np.float32)
    return ModelState("v1", seq, zeros, zeros, zeros.astype(np.int32), zeros.astype(np.int8), zeros.astype(np.int64))


def test_size_zero_keeps_nothing() -> None:
    cache = StateCache(max_users=0)
    cache.store({"a": state(1)})
    assert len(cache) == 0 and cache.known({"a"}) == {}


def test_storing_again_refreshes_a_user_against_eviction() -> None:
    cache = StateCache(max_users=2)
    cache.store({"a": state(1), "b": state(1)})
    cache.store({"a": state(2)})  # "a" is now the most recent: "b" leaves first
    cache.store({"c": state(1)})
    assert {user: s.seq for user, s in cache.known({"a", "b", "c"}).items()} == {"a": 2, "c": 1}


def test_a_cached_state_does_not_keep_its_batch_arrays_alive() -> None:
    batch_h = np.ones((256, 4), dtype=np.float32)  # as the stepper's states: rows of batch arrays
    row = state(1)._replace(h=batch_h[3])
    cache = StateCache(max_users=10)
    cache.store({"a": row})
    held = cache.known({"a"})["a"]
    assert not np.shares_memory(held.h, batch_h) and held.h.base is None
    np.testing.assert_array_equal(held.h, batch_h[3])


async def test_a_rebalance_empties_the_cache_after_the_batch_in_flight() -> None:
    cache = StateCache(max_users=10)
    published = asyncio.Event()

    async def wait_in_flight() -> None:
        await asyncio.sleep(0.01)
        published.set()

    partition = TopicPartition("events", 0)

    async def clear(_partitions: set[TopicPartition]) -> None:
        cache.clear("rebalance")

    listener = FinishBatchOnRevoke(asyncio.Lock(), wait_in_flight, {partition}, on_revoked=clear, on_assigned=clear)
    cache.store({"a": state(1)})
    await listener.on_partitions_revoked({partition})
    assert published.is_set() and len(cache) == 0
    cache.store({"a": state(2)})
    await listener.on_partitions_assigned({partition})
    assert len(cache) == 0
