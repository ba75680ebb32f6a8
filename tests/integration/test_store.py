"""WindowStore against a real private redis-server (the session fixture)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from stream.config import Settings
from stream.store import (
    AppendResult,
    StateWrite,
    StoreUnavailable,
    WindowAppend,
    WindowStore,
)
from stream.store.keys import UserKeys
from tools.devinfra.redis_server import RedisServer

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000


def make_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": url,
        "redis_key_prefix": f"st-{uuid.uuid4().hex[:8]}",
        "window_size": 5,
        "window_max_age_s": 3600,
        "user_ttl_s": 600,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def ev(user: str, n: int, ts_ms: int | None = None, row: bytes | None = None) -> WindowAppend:
    return WindowAppend(
        user_key=user,
        event_id=f"{user}-e{n}",
        ts_ms=T0 + n * 1000 if ts_ms is None else ts_ms,
        row=row if row is not None else bytes([n % 256, 0, 255]) + b"row",
    )


StoreFactory = Callable[..., WindowStore]


@pytest_asyncio.fixture(loop_scope="session")
async def store_factory(redis_server: RedisServer) -> AsyncIterator[StoreFactory]:
    made: list[WindowStore] = []

    def make(**overrides: Any) -> WindowStore:
        store = WindowStore(make_settings(redis_server.url, **overrides))
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest_asyncio.fixture(loop_scope="session")
async def store(store_factory: StoreFactory) -> WindowStore:
    return store_factory()


@pytest_asyncio.fixture(loop_scope="session")
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def keys_of(store: WindowStore, user: str) -> UserKeys:
    return UserKeys.of(store._settings.redis_key_prefix, user)


async def snapshot(raw: aioredis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every key under ``prefix`` with its value (lists in order, hashes as dicts)."""
    found: dict[bytes, Any] = {}
    async for key in raw.scan_iter(match=f"{prefix}:*"):
        kind = await raw.type(key)
        if kind == b"list":
            found[key] = await raw.lrange(key, 0, -1)
        elif kind == b"hash":
            found[key] = await raw.hgetall(key)
        else:
            found[key] = (kind, await raw.dump(key))
    return found


async def test_append_assigns_seq_prev_ts_and_window_len(store: WindowStore) -> None:
    results = await store.append_batch([ev("u1", 1), ev("u2", 1), ev("u1", 2), ev("u1", 3)])
    assert [(r.seq, r.window_len, r.applied) for r in results] == [
        (1, 1, True),
        (1, 1, True),
        (2, 2, True),
        (3, 3, True),
    ]
    assert [r.prev_ts_ms for r in results] == [None, None, T0 + 1000, T0 + 2000]
    assert all(r.state is None and r.state_seq is None for r in results)


async def test_read_windows_returns_rows_unchanged_oldest_first(store: WindowStore) -> None:
    binary = bytes(range(256))  # NULs and every byte value: rows are opaque
    await store.append_batch([ev("u", 1, row=binary), ev("u", 2, row=b""), ev("u", 3)])
    windows = await store.read_windows(["u", "nobody", "u"])
    assert set(windows) == {"u", "nobody"}
    window = windows["u"]
    assert window.seqs == [1, 2, 3]
    assert window.ts_ms == [T0 + 1000, T0 + 2000, T0 + 3000]
    assert window.event_ids == ["u-e1", "u-e2", "u-e3"]
    assert window.rows == [binary, b"", ev("u", 3).row]
    assert len(windows["nobody"]) == 0


async def test_duplicate_event_is_skipped_with_its_seq_and_state(store: WindowStore) -> None:
    await store.append_batch([ev("u", 1), ev("u", 2)])
    await store.write_states([StateWrite("u", 2, b"h-c-2")])
    results = await store.append_batch([ev("u", 2), ev("u", 3), ev("u", 3)])
    replay, fresh, replay_in_batch = results
    assert replay == AppendResult(
        applied=False, seq=2, window_len=2, prev_ts_ms=T0 + 1000, state_seq=2, state=b"h-c-2"
    )
    assert (fresh.applied, fresh.seq, fresh.window_len, fresh.prev_ts_ms) == (True, 3, 3, T0 + 2000)
    assert (fresh.state_seq, fresh.state) == (2, b"h-c-2")
    assert (replay_in_batch.applied, replay_in_batch.seq) == (False, 3)
    assert replay_in_batch.window_len == 3
    assert (await store.read_windows(["u"]))["u"].seqs == [1, 2, 3]


async def test_trim_by_count_forgets_trimmed_ids(store: WindowStore, raw: aioredis.Redis) -> None:
    results = await store.append_batch([ev("u", n) for n in range(1, 9)])  # window_size = 5
    assert [r.window_len for r in results] == [1, 2, 3, 4, 5, 5, 5, 5]
    window = (await store.read_windows(["u"]))["u"]
    assert window.seqs == [4, 5, 6, 7, 8]
    ids = await raw.hgetall(keys_of(store, "u").ids)
    assert ids == {f"u-e{n}".encode(): str(n).encode() for n in range(4, 9)}
    # An event whose id left the window is no longer recognised: it is appended again.
    again = (await store.append_batch([ev("u", 1)]))[0]
    assert (again.applied, again.seq) == (True, 9)


async def test_trim_by_age_relative_to_newest(store: WindowStore) -> None:
    old = [ev("u", 1, ts_ms=T0), ev("u", 2, ts_ms=T0 + 10 * 60_000)]
    await store.append_batch(old)
    newest = ev("u", 3, ts_ms=T0 + 2 * HOUR_MS)  # max age is one hour
    result = (await store.append_batch([newest]))[0]
    assert (result.seq, result.window_len, result.prev_ts_ms) == (3, 1, T0 + 10 * 60_000)
    window = (await store.read_windows(["u"]))["u"]
    assert window.seqs == [3]
    # A late event (older than the newest) is kept while within the age bound.
    late = (await store.append_batch([ev("u", 4, ts_ms=T0 + HOUR_MS + 1)]))[0]
    assert (late.seq, late.window_len) == (4, 2)


async def test_ttl_is_refreshed_on_every_key(store: WindowStore, raw: aioredis.Redis) -> None:
    await store.append_batch([ev("u", 1)])
    await store.write_states([StateWrite("u", 1, b"s")])
    keys = keys_of(store, "u")
    for key in keys.all():
        await raw.pexpire(key, 5_000)
    await store.append_batch([ev("u", 2)])
    ttls = [await raw.pttl(key) for key in keys.all()]
    assert all(595_000 < ttl <= 600_000 for ttl in ttls), ttls


async def test_write_states_compare_and_set(store: WindowStore, raw: aioredis.Redis) -> None:
    await store.append_batch([ev("u", n) for n in range(1, 4)])
    state_key = keys_of(store, "u").state
    assert await store.write_states([StateWrite("u", 2, b"two")]) == [True]
    assert await raw.hgetall(state_key) == {b"seq": b"2", b"blob": b"two"}
    assert await store.write_states([StateWrite("u", 1, b"one"), StateWrite("u", 2, b"two-again")]) == [False, False]
    assert await raw.hgetall(state_key) == {b"seq": b"2", b"blob": b"two"}
    assert await store.write_states([StateWrite("u", 3, b"three"), StateWrite("u", 2, b"late")]) == [True, False]
    assert await raw.hgetall(state_key) == {b"seq": b"3", b"blob": b"three"}
    assert 0 < await raw.pttl(state_key) <= 600_000
    # No live history, no state: a write for an unknown user leaves nothing behind.
    assert await store.write_states([StateWrite("ghost", 5, b"x")]) == [False]
    assert await raw.exists(keys_of(store, "ghost").state) == 0


async def test_a_state_the_caller_holds_is_not_sent_back(store: WindowStore) -> None:
    await store.append_batch([ev("u", 1), ev("v", 1)])
    await store.write_states([StateWrite("u", 1, b"u-one"), StateWrite("v", 1, b"v-one")])
    # "u" is held at the stored seq: seq only. "v" is held at an older seq: the blob comes back.
    u2, v2 = await store.append_batch([ev("u", 2), ev("v", 2)], {"u": 1, "v": 7})
    assert (u2.seq, u2.state_seq, u2.state) == (2, 1, None)
    assert (v2.seq, v2.state_seq, v2.state) == (2, 1, b"v-one")
    # Without held seqs every stored state is sent.
    u3 = (await store.append_batch([ev("u", 3)]))[0]
    assert (u3.state_seq, u3.state) == (1, b"u-one")


async def test_fresh_history_drops_a_leftover_state(
    store: WindowStore, raw: aioredis.Redis
) -> None:
    await store.append_batch([ev("u", 1), ev("u", 2)])
    await store.write_states([StateWrite("u", 2, b"old")])
    keys = keys_of(store, "u")
    await raw.delete(keys.window, keys.ids, keys.meta)  # as if they expired before the state
    result = (await store.append_batch([ev("u", 3)]))[0]
    assert (result.seq, result.state_seq, result.state) == (1, None, None)
    assert await raw.exists(keys.state) == 0


async def test_forget_user_deletes_only_that_user(store: WindowStore, raw: aioredis.Redis) -> None:
    await store.append_batch([ev("a", 1), ev("b", 1)])
    await store.write_states([StateWrite("a", 1, b"s")])
    assert await store.forget_user("a") == 4
    assert await raw.exists(*keys_of(store, "a").all()) == 0
    assert await store.forget_user("a") == 0
    assert (await store.read_windows(["b"]))["b"].seqs == [1]


async def test_replaying_a_batch_leaves_identical_keys(
    store_factory: StoreFactory, raw: aioredis.Redis
) -> None:
    store = store_factory(window_size=10)
    batch = [ev(user, n) for n in range(1, 8) for user in ("a", "b", "c")]

    async def process() -> list[AppendResult]:
        results = await store.append_batch(batch)
        pairs = zip(batch, results, strict=True)
        await store.write_states([StateWrite(i.user_key, r.seq, b"s%d" % r.seq) for i, r in pairs])
        return results

    first = await process()
    prefix = store._settings.redis_key_prefix
    before = await snapshot(raw, prefix)
    assert len(before) == 12  # 3 users x (window, ids, meta, state)
    second = await process()
    assert await snapshot(raw, prefix) == before
    assert all(r.applied for r in first)
    assert [(r.applied, r.seq, r.state_seq) for r in second] == [(False, r.seq, 7) for r in first]


async def _commands_during(
    raw: aioredis.Redis, action: Callable[[], Awaitable[object]]
) -> list[str]:
    """Client (non-Lua) commands Redis executed while ``action`` ran, seen through MONITOR."""
    sentinel = f"end-{uuid.uuid4().hex}"
    seen: list[str] = []
    # A warmed single connection: a fresh one would show its handshake (CLIENT SETINFO) too.
    marker = aioredis.Redis(connection_pool=raw.connection_pool, single_connection_client=True)
    await marker.ping()
    async with raw.monitor() as monitor:
        await action()
        await marker.echo(sentinel)
        while True:
            info = await asyncio.wait_for(monitor.next_command(), timeout=10)
            if sentinel in info["command"]:
                break
            if info["client_type"] != "lua":
                seen.append(info["command"].split(" ", 1)[0].upper())
    await marker.aclose()
    return seen


async def test_each_call_is_one_round_trip(store: WindowStore, raw: aioredis.Redis) -> None:
    batch = [ev(f"user{i % 10}", i) for i in range(60)]
    await store.append_batch(batch[:1])  # connect and load the script once
    await store.write_states([StateWrite("user0", 1, b"warm")])

    assert await _commands_during(raw, lambda: store.append_batch(batch[1:])) == ["EVALSHA"]
    writes = [StateWrite(f"user{i}", 6, b"s") for i in range(10)]
    assert await _commands_during(raw, lambda: store.write_states(writes)) == ["EVALSHA"]
    users = [f"user{i}" for i in range(10)]
    assert await _commands_during(raw, lambda: store.read_windows(users)) == ["LRANGE"] * 10


async def test_noscript_after_script_flush_is_recovered(
    store: WindowStore, raw: aioredis.Redis
) -> None:
    await store.append_batch([ev("u", 1)])
    await raw.script_flush()
    result = (await store.append_batch([ev("u", 2)]))[0]
    assert (result.applied, result.seq) == (True, 2)


async def test_redis_down_raises_store_unavailable_then_recovers(
    store: WindowStore, redis_server: RedisServer
) -> None:
    await store.append_batch([ev("u", 1)])
    redis_server.kill()
    with pytest.raises(StoreUnavailable):
        await store.append_batch([ev("u", 2)])
    assert await store.ping() is False
    redis_server.start()  # same port, empty (no persistence)
    assert await store.ping() is True
    result = (await store.append_batch([ev("u", 2)]))[0]
    assert (result.applied, result.seq) == (True, 1)


async def test_cluster_client_groups_a_batch_by_slot(tmp_path: Path) -> None:
    node = RedisServer.cluster_node(tmp_path)  # its cluster bus port (+10000) is free too
    with node:
        admin = aioredis.Redis.from_url(node.url)
        await admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        for _ in range(200):
            if b"cluster_state:ok" in await admin.execute_command("CLUSTER", "INFO"):
                break
            await asyncio.sleep(0.05)
        await admin.aclose()
        store = WindowStore(make_settings(node.url, redis_cluster=True))
        try:
            users = [f"user{i}" for i in range(20)]
            assert len(store._slot_groups(users)) > 1
            batch = [ev(user, n) for n in range(1, 4) for user in users]
            results = await store.append_batch(batch)
            assert [r.seq for r in results] == [n for n in range(1, 4) for _ in users]
            await store.write_states([StateWrite(user, 3, b"s") for user in users])
            replay = await store.append_batch(batch)
            assert all(not r.applied and r.state_seq == 3 for r in replay)
            windows = await store.read_windows(users)
            assert all(window.seqs == [1, 2, 3] for window in windows.values())
            assert await store.forget_user("user0") == 4
        finally:
            await store.close()
