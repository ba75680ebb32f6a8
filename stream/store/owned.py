"""The worker's store: the users of its partitions held in process, Redis written behind.

Per batch: :meth:`OwnedStore.append_batch` loads the users it lacks in ONE pipelined read
(claiming each one for this worker's fence epoch), then appends in process with the same rules
as ``append_window.lua`` (:class:`~stream.store.user_window.UserWindow`); ``write_states`` and
``read_windows`` are in process too; :meth:`OwnedStore.flush` writes every changed user behind
in ONE pipelined write, which the caller awaits before committing the batch's offsets. Redis
stays the source of truth: a crash loses nothing that was committed, and whoever owns the
partition next loads exactly what was written. docs/redis-layout.md ("State v2") has the fence.

A batch that fails between its append and its flush leaves the held copies ahead of Redis:
:meth:`OwnedStore.abandon` drops those users, and the retried batch loads them again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from stream.config import Settings
from stream.store.backing import BackingStore, HeldWrite, LoadedUser, WriteOutcome
from stream.store.exceptions import Fenced, StoreUnavailable
from stream.store.held import HeldUser, HeldUsers
from stream.store.window_store import AppendResult, StateWrite, Window, WindowAppend

logger = logging.getLogger(__name__)

# A user's keys get their TTL set again at a write-behind when the last renewal is older than
# 1/64 of the TTL (~11 h of the default 30 days), so they expire between 63/64 of the TTL and the
# TTL after the user's last event, not at exactly the TTL.
TTL_RENEWAL_FRACTION = 64


class OwnedStore:
    """Held users of the owned partitions over a :class:`BackingStore` (Redis in production)."""

    def __init__(
        self,
        backing: BackingStore,
        *,
        window_size: int,
        max_age_ms: int,
        ttl_ms: int,
        max_users: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backing = backing
        self.window_size = window_size
        self.max_age_ms = max_age_ms
        self.ttl_ms = ttl_ms
        self.held = HeldUsers(max_users)
        self._clock = clock
        self._epoch: int | None = None  # taken on assignment (or at the first load after it)
        self.loads = 0  # users loaded from the backing store (a metric reads it)
        # Users whose keys the write-behind found overwritten (and deleted): reported at their next load.
        self._repaired: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings, backing: BackingStore) -> OwnedStore:
        return cls(
            backing,
            window_size=settings.window_size,
            max_age_ms=settings.window_max_age_s * 1000,
            ttl_ms=settings.user_ttl_s * 1000,
            max_users=settings.worker_max_held_users,
        )

    @property
    def epoch(self) -> int | None:
        return self._epoch

    async def assign(self, partitions: Collection[int]) -> None:
        """Partitions were assigned: take a new fence epoch (later if the store is down now)."""
        self._epoch = None
        try:
            self._epoch = await self.backing.next_epoch()
        except StoreUnavailable as exc:  # the first batch takes it, under the retry policy
            logger.warning("no fence epoch on assignment (%s); the first batch takes one", exc)

    async def revoke(self, partitions: Collection[int]) -> None:
        """Partitions were revoked: their users may change under another owner from now on."""
        dropped = self.held.drop_partitions(set(partitions))
        logger.info("dropped %d held users of revoked partitions %s", dropped, sorted(partitions))

    def held_states(self, user_keys: Collection[str]) -> dict[str, Any]:
        """The decoded states held for ``user_keys`` (those given to :meth:`write_states`)."""
        out: dict[str, Any] = {}
        users = self.held.users
        for user_key in user_keys:
            held = users.get(user_key)
            if held is not None and held.decoded is not None and held.decoded_seq == held.window.state_seq:
                out[user_key] = held.decoded
        return out

    async def append_batch(
        self, items: Sequence[WindowAppend], held_state_seqs: Mapping[str, int] | None = None
    ) -> list[AppendResult]:
        """Append in process (loading the users not held first); same results as the Redis store."""
        if not items:
            return []
        await self._load_missing(items)
        held_seqs = held_state_seqs or {}
        users = self.held.users
        seen: dict[str, bytes | None] = {}  # user -> the state blob reported at its first event
        repaired: dict[str, str | None] = {}
        results: list[AppendResult] = []
        window_size, max_age_ms = self.window_size, self.max_age_ms
        for item in items:
            user_key = item.user_key
            held = users[user_key]
            window = held.window
            first = user_key not in seen
            if first:
                holds = window.state_seq is not None and held_seqs.get(user_key) == window.state_seq
                seen[user_key] = None if holds else window.state
                repaired[user_key], held.repaired = held.repaired, None
            applied, seq, prev_ts = window.append(item, window_size=window_size, max_age_ms=max_age_ms)
            if applied:
                self.held.pending.add(user_key)
            results.append(
                AppendResult(
                    applied,
                    seq,
                    len(window.seqs),
                    prev_ts,
                    window.state_seq,
                    seen[user_key],
                    repaired[user_key] if first else None,
                )
            )
        expires_at = self._clock() + self.ttl_ms / 1000
        for user_key in self.held.pending:
            users[user_key].window.expires_at = expires_at
        return results

    async def write_states(self, writes: Sequence[StateWrite]) -> list[bool]:
        """Compare-and-set in process; written behind by the next :meth:`flush`."""
        stored: list[bool] = []
        for write in writes:
            held = self.held.users.get(write.user_key)
            ok = held is not None and held.window.store_state(write.seq, write.blob)
            if ok and held is not None:
                held.state_dirty = True
                held.decoded, held.decoded_seq = write.decoded, write.seq
                self.held.pending.add(write.user_key)
            stored.append(ok)
        return stored

    async def read_windows(self, user_keys: Sequence[str]) -> dict[str, Window]:
        """The held windows (entries that did not decode at load are counted once, as ``malformed``)."""
        windows: dict[str, Window] = {}
        for user_key in dict.fromkeys(user_keys):
            held = self.held.users.get(user_key)
            if held is None:
                windows[user_key] = Window(seqs=[], ts_ms=[], rows=[], event_ids=[])
                continue
            w = held.window
            windows[user_key] = Window(list(w.seqs), list(w.ts), list(w.rows), list(w.event_ids), held.malformed)
            held.malformed = 0
        return windows

    async def flush(self) -> None:
        """Write every changed user behind (one pipelined write); raises :class:`Fenced`."""
        held = self.held
        if held.pending:
            pending = list(held.pending)
            now = self._clock()
            renew_after = now - self.ttl_ms / 1000 / TTL_RENEWAL_FRACTION
            writes = []
            for user in pending:
                h = held.users[user]
                # New keys need a TTL; live ones get theirs renewed only now and then (each call
                # costs Redis more than the rest of the user's write): docs/redis-layout.md.
                renew = h.flushed_seq == 0 or h.rewrite or (h.state_dirty and not h.state_stored)
                renew = renew or h.renewed_at <= renew_after
                writes.append(
                    HeldWrite(user, h.epoch, h.window, h.flushed_seq, h.rewrite, h.state_dirty, h.flushed_len, renew)
                )
            try:
                outcomes = await self.backing.write_behind(writes)
            except BaseException:
                self.abandon()
                raise
            fenced: list[str] = []
            gone: list[str] = []
            for write, outcome in zip(writes, outcomes, strict=True):
                user = write.user_key
                if outcome is WriteOutcome.WRITTEN:
                    h = held.users[user]
                    h.state_stored = h.state_stored or h.state_dirty
                    h.flushed_seq, h.flushed_len, h.rewrite, h.state_dirty = (
                        h.window.seq,
                        len(h.window.seqs),
                        False,
                        False,
                    )
                    if write.renew_ttl:
                        h.renewed_at = now
                elif outcome is WriteOutcome.FENCED:
                    fenced.append(user)
                else:
                    gone.append(user)
                    if outcome is WriteOutcome.REPAIRED:
                        self._repaired[user] = "window"
            partitions = frozenset(held.partitions_of(fenced))
            held.pending.clear()
            if gone:  # expired, erased or overwritten meanwhile: the next event starts a fresh history
                logger.info("%d users' keys were gone at write-behind (expired, erased, overwritten)", len(gone))
                held.drop(gone)
            if fenced:
                held.drop_partitions(partitions)
                raise Fenced(partitions, len(fenced))
        held.evict()

    def abandon(self) -> None:
        """Drop the users whose held copies are ahead of the backing store (a failed batch)."""
        if self.held.pending:
            logger.info("dropping %d held users with unwritten changes", len(self.held.pending))
            self.held.drop(list(self.held.pending))

    async def _load_missing(self, items: Sequence[WindowAppend]) -> None:
        now = self._clock()
        users = self.held.users
        partition_of: dict[str, int] = {}
        for item in items:
            held = users.get(item.user_key)
            if held is None or held.window.expires_at <= now:
                partition_of.setdefault(item.user_key, item.partition)
            else:
                users.move_to_end(item.user_key)
                held.partition = item.partition
        if not partition_of:
            return
        if self._epoch is None:
            self._epoch = await self.backing.next_epoch()
        epoch = self._epoch
        loaded = await self.backing.load_users(list(partition_of), epoch)
        self.loads += len(loaded)
        fenced = [user.user_key for user in loaded if user.fenced]
        if fenced:
            partitions = frozenset(partition_of[user] for user in fenced)
            self.held.drop_partitions(partitions)
            raise Fenced(partitions, len(fenced))
        for user in loaded:
            if user.user_key in self._repaired and user.repaired is None:
                user = user._replace(repaired=self._repaired.pop(user.user_key))
            self.held.add(user.user_key, _held(user, partition_of[user.user_key], epoch, now, self.ttl_ms))

    async def ping(self) -> bool:
        return await self.backing.ping()

    async def close(self) -> None:
        await self.backing.close()


def _held(user: LoadedUser, partition: int, epoch: int, now: float, ttl_ms: int) -> HeldUser:
    window = user.window
    remaining_ms = user.ttl_ms if user.ttl_ms > 0 else 0
    window.expires_at = now + (remaining_ms or ttl_ms) / 1000
    return HeldUser(
        window,
        partition,
        epoch,
        flushed_seq=window.seq,
        rewrite=user.rewrite,
        repaired=user.repaired,
        malformed=user.malformed,
        flushed_len=-1 if user.rewrite else len(window.seqs),
        state_stored=window.state_seq is not None,
        renewed_at=now - (ttl_ms - remaining_ms) / 1000,  # when a full TTL would have been set
    )
