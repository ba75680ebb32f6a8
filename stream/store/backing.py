"""What the held-users store needs of the store behind it (Redis, or the in-memory one in tests).

:class:`~stream.store.owned.OwnedStore` keeps the users of the partitions it owns in process
and only talks to its backing store to claim a fence epoch on assignment, to load the users it
lacks (one pipelined read per batch) and to write the changed ones behind (one pipelined write
per batch). Rules and key layout: docs/redis-layout.md ("State v2").
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import NamedTuple, Protocol

from stream.store.user_window import UserWindow


class WriteOutcome(IntEnum):
    """What the backing store did with one user's write-behind."""

    WRITTEN = 1
    GONE = 0  # the user's keys expired or were erased since the load: nothing written
    FENCED = -1  # a newer owner claimed the user (its fence epoch is higher): nothing written
    REPAIRED = 2  # the stored window had been overwritten by another type: all its keys deleted


class LoadedUser(NamedTuple):
    """One user as loaded (and claimed) from the backing store."""

    user_key: str
    fenced: bool  # a newer owner holds the user: nothing else is set
    window: UserWindow  # the stored window, history counters and state (expires_at unset)
    ttl_ms: int  # remaining time to live of the user's keys (<= 0: none set)
    malformed: int = 0  # window entries whose header did not decode (left out)
    repaired: str | None = None  # "window" | "state": a key of the wrong type was deleted
    rewrite: bool = False  # the stored window differs from ``window``: write it whole next time


class HeldWrite(NamedTuple):
    """The changes of one held user since its last write-behind."""

    user_key: str
    epoch: int  # the fence epoch the user was loaded under
    window: UserWindow  # as held now (entries with seq > flushed_seq are new)
    flushed_seq: int  # the newest event seq the backing store already holds
    rewrite: bool  # replace the stored window instead of appending to it
    write_state: bool  # the state changed
    flushed_len: int = -1  # entries the stored window holds (-1: unknown, trim it)
    renew_ttl: bool = True  # set every key's TTL again


class BackingStore(Protocol):
    """The source of truth behind the held users."""

    async def next_epoch(self) -> int:
        """A fence epoch higher than every one handed out before (taken on each assignment)."""
        ...

    async def load_users(self, user_keys: Sequence[str], epoch: int) -> list[LoadedUser]:
        """Read and claim users (their fence becomes ``epoch`` unless a higher one is stored)."""
        ...

    async def write_behind(self, writes: Sequence[HeldWrite]) -> list[WriteOutcome]:
        """Persist held users' changes, each only if no higher epoch claimed the user."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
