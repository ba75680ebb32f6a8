"""An in-memory window/state store with the Redis store's semantics, for unit tests and benchmarks.

It follows append_window.lua and write_states.lua rule for rule (docs/redis-layout.md): dedup
per event_id, 1-based seqs, count then age trimming, a fresh history dropping an old state,
compare-and-set states, and one TTL per user renewed by every change (the rules themselves live
in :class:`~stream.store.user_window.UserWindow`). It is also a :class:`BackingStore` for the
held-users store, fence epochs included. Nothing is persisted.

>>> import asyncio
>>> store = MemoryWindowStore(window_size=2, max_age_ms=10_000, ttl_ms=60_000)
>>> results = asyncio.run(store.append_batch([WindowAppend("u", "e1", 1, b"a"), WindowAppend("u", "e1", 1, b"a")]))
>>> [(r.applied, r.seq) for r in results]
[(True, 1), (False, 1)]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from stream.config import Settings
from stream.store.backing import HeldWrite, LoadedUser, WriteOutcome
from stream.store.user_window import UserWindow
from stream.store.window_store import AppendResult, StateWrite, Window, WindowAppend


def copy_window(window: UserWindow) -> UserWindow:
    """A copy that shares no list or dict with ``window``."""
    return UserWindow(
        list(window.seqs),
        list(window.ts),
        list(window.event_ids),
        list(window.rows),
        dict(window.ids),
        window.seq,
        window.max_ts,
        window.state_seq,
        window.state,
        window.expires_at,
    )


class MemoryWindowStore:
    """Per-user windows and states in a dict; ``clock`` (seconds) drives the TTL."""

    def __init__(
        self, *, window_size: int, max_age_ms: int, ttl_ms: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_size = window_size
        self.max_age_ms = max_age_ms
        self.ttl_ms = ttl_ms
        self._clock = clock
        self._users: dict[str, UserWindow] = {}
        self._fences: dict[str, int] = {}  # user -> the epoch of its latest claim
        self._epoch = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryWindowStore:
        return cls(
            window_size=settings.window_size,
            max_age_ms=settings.window_max_age_s * 1000,
            ttl_ms=settings.user_ttl_s * 1000,
        )

    def _live(self, user_key: str) -> UserWindow | None:
        user = self._users.get(user_key)
        if user is not None and user.expires_at <= self._clock():
            del self._users[user_key]  # expired: as if Redis had dropped every key
            self._fences.pop(user_key, None)
            return None
        return user

    async def append_batch(
        self, items: Sequence[WindowAppend], held_state_seqs: Mapping[str, int] | None = None
    ) -> list[AppendResult]:
        held = held_state_seqs or {}
        seen: dict[str, bytes | None] = {}  # user -> the state blob sent at its first event
        dirty: set[str] = set()
        results: list[AppendResult] = []
        for item in items:
            user = self._live(item.user_key)
            if user is None:  # a fresh history: nothing of an earlier one survives
                user = self._users[item.user_key] = UserWindow(expires_at=self._clock() + self.ttl_ms / 1000)
            if item.user_key not in seen:
                holds = user.state_seq is not None and held.get(item.user_key) == user.state_seq
                seen[item.user_key] = None if holds else user.state
            applied, seq, prev_ts = user.append(item, window_size=self.window_size, max_age_ms=self.max_age_ms)
            if applied:
                dirty.add(item.user_key)
            results.append(AppendResult(applied, seq, len(user.seqs), prev_ts, user.state_seq, seen[item.user_key]))
        expires_at = self._clock() + self.ttl_ms / 1000
        for user_key in dirty:
            self._users[user_key].expires_at = expires_at
        return results

    async def write_states(self, writes: Sequence[StateWrite]) -> list[bool]:
        stored: list[bool] = []
        for write in writes:
            user = self._live(write.user_key)
            stored.append(user is not None and user.store_state(write.seq, write.blob))
        return stored

    async def read_windows(self, user_keys: Sequence[str]) -> dict[str, Window]:
        windows: dict[str, Window] = {}
        for user_key in dict.fromkeys(user_keys):
            user = self._live(user_key)
            if user is None:
                windows[user_key] = Window(seqs=[], ts_ms=[], rows=[], event_ids=[])
            else:
                windows[user_key] = Window(list(user.seqs), list(user.ts), list(user.rows), list(user.event_ids))
        return windows

    async def forget_user(self, user_key: str) -> int:
        self._fences.pop(user_key, None)
        return 1 if self._users.pop(user_key, None) is not None else 0

    # --- BackingStore: what the held-users store asks of the store behind it -----------------

    async def next_epoch(self) -> int:
        self._epoch += 1
        return self._epoch

    async def load_users(self, user_keys: Sequence[str], epoch: int) -> list[LoadedUser]:
        loaded: list[LoadedUser] = []
        for user_key in user_keys:
            if self._fences.get(user_key, 0) > epoch:
                loaded.append(LoadedUser(user_key, True, UserWindow(), 0))
                continue
            user = self._live(user_key)
            if user is None:  # the claim creates the user (Redis: its meta hash with the fence)
                user = self._users[user_key] = UserWindow(expires_at=self._clock() + self.ttl_ms / 1000)
            self._fences[user_key] = epoch
            ttl_ms = int((user.expires_at - self._clock()) * 1000)
            loaded.append(LoadedUser(user_key, False, copy_window(user), ttl_ms))
        return loaded

    async def write_behind(self, writes: Sequence[HeldWrite]) -> list[WriteOutcome]:
        outcomes: list[WriteOutcome] = []
        for write in writes:
            user = self._live(write.user_key)
            fence = self._fences.get(write.user_key)
            if user is None or fence is None:
                outcomes.append(WriteOutcome.GONE)
            elif fence > write.epoch:
                outcomes.append(WriteOutcome.FENCED)
            else:
                stored = copy_window(write.window)
                if not write.write_state:
                    stored.state_seq, stored.state = user.state_seq, user.state
                stored.expires_at = self._clock() + self.ttl_ms / 1000
                self._users[write.user_key] = stored
                outcomes.append(WriteOutcome.WRITTEN)
        return outcomes

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
