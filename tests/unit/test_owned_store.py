"""The held-users store against the in-memory backing store: loads, write-behind, bounds, fences."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stream.store import Fenced, MemoryWindowStore, OwnedStore, StateWrite, StoreUnavailable, WindowAppend
from stream.store.backing import HeldWrite, LoadedUser, WriteOutcome


class CountingBacking(MemoryWindowStore):
    """The in-memory store, counting calls; ``fail_writes`` makes the next write-behind fail."""

    def __init__(self) -> None:
        super().__init__(window_size=3, max_age_ms=1_000_000, ttl_ms=3_600_000)
        self.load_calls: list[list[str]] = []
        self.write_calls: list[list[str]] = []
        self.fail_writes = False

    async def load_users(self, user_keys: Sequence[str], epoch: int) -> list[LoadedUser]:
        self.load_calls.append(list(user_keys))
        return await super().load_users(user_keys, epoch)

    async def write_behind(self, writes: Sequence[HeldWrite]) -> list[WriteOutcome]:
        self.write_calls.append(sorted(write.user_key for write in writes))
        if self.fail_writes:
            self.fail_writes = False
            raise StoreUnavailable("down")
        return await super().write_behind(writes)


def ev(user: str, n: int, partition: int = 0) -> WindowAppend:
    return WindowAppend(user, f"{user}-e{n}", 1_000 * n, b"row%d" % n, partition)


def owned(backing: MemoryWindowStore, max_users: int = 100) -> OwnedStore:
    return OwnedStore(backing, window_size=3, max_age_ms=1_000_000, ttl_ms=3_600_000, max_users=max_users)


async def batch(store: OwnedStore, items: list[WindowAppend]) -> list[tuple[bool, int]]:
    results = await store.append_batch(items)
    pairs = zip(items, results, strict=True)
    await store.write_states([StateWrite(i.user_key, r.seq, b"s%d" % r.seq) for i, r in pairs])
    await store.flush()
    return [(r.applied, r.seq) for r in results]


async def test_one_load_per_batch_for_the_users_it_lacks_none_once_held() -> None:
    backing = CountingBacking()
    store = owned(backing)
    await store.assign({0})
    await batch(store, [ev("a", 1), ev("b", 1), ev("a", 2)])
    await batch(store, [ev("a", 3), ev("c", 1)])
    assert backing.load_calls == [["a", "b"], ["c"]]
    assert backing.write_calls == [["a", "b"], ["a", "c"]]


async def test_the_backing_store_ends_as_if_it_had_taken_every_append_itself() -> None:
    backing, reference = CountingBacking(), CountingBacking()
    store = owned(backing)
    await store.assign({0})
    items = [ev("a", n) for n in range(1, 6)] + [ev("a", 2), ev("b", 1)]  # a replay, trimming at 3
    got = [r for i in range(0, len(items), 2) for r in await batch(store, items[i : i + 2])]
    want = [(r.applied, r.seq) for r in await reference.append_batch(items)]
    assert got == want
    assert await backing.read_windows(["a", "b"]) == await reference.read_windows(["a", "b"])
    # A new owner loads exactly that.
    other = owned(backing)
    await other.assign({0})
    more = [ev("a", 5), ev("a", 6)]
    expected = [(r.applied, r.seq, r.window_len) for r in await reference.append_batch(more)]
    assert [(r.applied, r.seq, r.window_len) for r in await other.append_batch(more)] == expected


async def test_revocation_drops_only_that_partitions_users() -> None:
    store = owned(CountingBacking())
    await store.assign({0, 1})
    await batch(store, [ev("a", 1, partition=0), ev("b", 1, partition=1)])
    await store.revoke({1})
    assert sorted(store.held.users) == ["a"]


async def test_the_bound_evicts_clean_users_least_recently_used_first() -> None:
    backing = CountingBacking()
    store = owned(backing, max_users=2)
    await store.assign({0})
    await batch(store, [ev("a", 1), ev("b", 1), ev("c", 1)])
    assert sorted(store.held.users) == ["b", "c"]
    await batch(store, [ev("a", 2)])  # loaded again, with what was written behind
    assert backing.load_calls[-1] == ["a"]
    assert sorted(store.held.users) == ["a", "c"]
    assert (await backing.read_windows(["a"]))["a"].seqs == [1, 2]


async def test_nothing_held_between_batches_at_zero() -> None:
    backing = CountingBacking()
    store = owned(backing, max_users=0)
    await store.assign({0})
    await batch(store, [ev("a", 1)])
    await batch(store, [ev("a", 2)])
    assert backing.load_calls == [["a"], ["a"]] and len(store.held) == 0
    assert (await backing.read_windows(["a"]))["a"].seqs == [1, 2]


async def test_a_failed_write_behind_drops_the_changed_users_and_the_retry_reloads() -> None:
    backing = CountingBacking()
    store = owned(backing)
    await store.assign({0})
    await batch(store, [ev("a", 1)])
    backing.fail_writes = True
    with pytest.raises(StoreUnavailable):
        await batch(store, [ev("a", 2)])
    assert len(store.held) == 0
    assert await batch(store, [ev("a", 2)]) == [(True, 2)]  # the retried batch: a reload, then the append
    assert backing.load_calls[-1] == ["a"]


async def test_a_zombie_write_is_fenced_and_the_new_owner_state_survives() -> None:
    backing = CountingBacking()
    old, new = owned(backing), owned(backing)
    await old.assign({0})
    await batch(old, [ev("a", 1), ev("b", 1)])
    await old.append_batch([ev("a", 2)])  # the old owner's batch in flight ...
    await new.assign({0})  # ... while the partition moves
    await batch(new, [ev("a", 2), ev("a", 3)])
    with pytest.raises(Fenced) as fenced:
        await old.flush()
    assert fenced.value.partitions == {0} and len(old.held) == 0
    assert (await backing.read_windows(["a"]))["a"].event_ids == ["a-e1", "a-e2", "a-e3"]
    # Users the new owner has not claimed yet: the old one's writes still land (the new owner
    # loads them later, with them); once it loads one, the old owner's load is fenced too.
    await new.append_batch([ev("b", 2)])
    with pytest.raises(Fenced):
        await old.append_batch([ev("b", 3)])


async def test_a_user_erased_meanwhile_is_dropped_not_rewritten() -> None:
    backing = CountingBacking()
    store = owned(backing)
    await store.assign({0})
    await batch(store, [ev("a", 1)])
    await store.append_batch([ev("a", 2)])
    await backing.forget_user("a")
    await store.flush()  # no error: the user's keys are gone, its held copy too
    assert len(store.held) == 0 and await backing.forget_user("a") == 0
