"""An in-memory window/state store with the Redis store's semantics, for unit tests and benchmarks.

It follows append_window.lua and write_states.lua rule for rule (docs/redis-layout.md): dedup
per event_id, 1-based seqs, count then age trimming, a fresh history dropping an old state,
compare-and-set states, and one TTL per user renewed by every change. Nothing is persisted.

>>> import asyncio
>>> store = MemoryWindowStore(window_size=2, max_age_ms=10_000, ttl_ms=60_000)
>>> results = asyncio.run(store.append_batch([WindowAppend("u", "e1", 1, b"a"), WindowAppend("u", "e1", 1, b"a")]))
>>> [(r.applied, r.seq) for r in results]
[(True, 1), (False, 1)]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from stream.config import Settings
from stream.store.window_store import AppendResult, StateWrite, Window, WindowAppend


@dataclass(slots=True)
class _User:
    seqs: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    rows: list[bytes] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)  # event_id -> seq, for the events in the window
    seq: int = 0
    max_ts: int | None = None
    state_seq: int | None = None
    state: bytes | None = None
    expires_at: float = 0.0


class MemoryWindowStore:
    """Per-user windows and states in a dict; ``clock`` (seconds) drives the TTL."""

    def __init__(
        self, *, window_size: int, max_age_ms: int, ttl_ms: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_size = window_size
        self.max_age_ms = max_age_ms
        self.ttl_ms = ttl_ms
        self._clock = clock
        self._users: dict[str, _User] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryWindowStore:
        return cls(
            window_size=settings.window_size,
            max_age_ms=settings.window_max_age_s * 1000,
            ttl_ms=settings.user_ttl_s * 1000,
        )

    def _live(self, user_key: str) -> _User | None:
        user = self._users.get(user_key)
        if user is not None and user.expires_at <= self._clock():
            del self._users[user_key]  # expired: as if Redis had dropped every key
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
                user = self._users[item.user_key] = _User(expires_at=self._clock() + self.ttl_ms / 1000)
            if item.user_key not in seen:
                holds = user.state_seq is not None and held.get(item.user_key) == user.state_seq
                seen[item.user_key] = None if holds else user.state
            known = user.ids.get(item.event_id)
            if known is not None:  # a replay: change nothing, report the event as it stands
                at = user.seqs.index(known)
                prev_ts = user.ts[at - 1] if at > 0 else None
                results.append(AppendResult(False, known, len(user.seqs), prev_ts, user.state_seq, seen[item.user_key]))
                continue
            prev_ts = user.ts[-1] if user.ts else None
            user.seq += 1
            user.max_ts = item.ts_ms if user.max_ts is None else max(user.max_ts, item.ts_ms)
            user.seqs.append(user.seq)
            user.ts.append(item.ts_ms)
            user.event_ids.append(item.event_id)
            user.rows.append(item.row)
            user.ids[item.event_id] = user.seq
            while len(user.seqs) > self.window_size:
                self._pop_oldest(user)
            cutoff = user.max_ts - self.max_age_ms
            while len(user.seqs) > 1 and user.ts[0] < cutoff:
                self._pop_oldest(user)
            dirty.add(item.user_key)
            results.append(AppendResult(True, user.seq, len(user.seqs), prev_ts, user.state_seq, seen[item.user_key]))
        expires_at = self._clock() + self.ttl_ms / 1000
        for user_key in dirty:
            self._users[user_key].expires_at = expires_at
        return results

    @staticmethod
    def _pop_oldest(user: _User) -> None:
        user.seqs.pop(0)
        user.ts.pop(0)
        user.rows.pop(0)
        user.ids.pop(user.event_ids.pop(0), None)

    async def write_states(self, writes: Sequence[StateWrite]) -> list[bool]:
        stored: list[bool] = []
        for write in writes:
            user = self._live(write.user_key)
            ok = user is not None and (user.state_seq is None or user.state_seq < write.seq)
            if ok and user is not None:
                user.state_seq, user.state = write.seq, write.blob
            stored.append(ok)
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
        return 1 if self._users.pop(user_key, None) is not None else 0

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
