"""Bookkeeping of the users a worker holds in process: partition, fence epoch, what is unwritten.

Pure data, no I/O (:class:`~stream.store.owned.OwnedStore` does the loading and writing). A held
user belongs to the partition its events came from, so a revocation drops exactly that
partition's users; users with changes not yet written behind are "pending" and never evicted;
clean users beyond ``max_users`` leave least recently used first (and are loaded again from the
backing store when they come back).

>>> held = HeldUsers(max_users=1)
>>> held.add("a", HeldUser(UserWindow(), partition=0, epoch=1, flushed_seq=0))
>>> held.add("b", HeldUser(UserWindow(), partition=1, epoch=1, flushed_seq=0))
>>> held.pending.add("b")
>>> held.evict(), sorted(held.users)
(1, ['b'])
>>> held.drop_partitions({1}), len(held.users), held.pending
(1, 0, set())
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from stream.store.user_window import UserWindow


@dataclass(slots=True)
class HeldUser:
    """One user of an owned partition, as held in process."""

    window: UserWindow
    partition: int
    epoch: int  # the fence epoch it was loaded (claimed) under; carried by its writes
    flushed_seq: int  # the newest event seq the backing store holds
    rewrite: bool = False  # the stored window differs (malformed entries left out): write it whole
    state_dirty: bool = False
    decoded: Any = None  # the caller's decoded form of a state ...
    decoded_seq: int | None = None  # ... and its seq (used only while it is the held state's)
    repaired: str | None = None  # a wrong-typed key deleted at load, reported at the next append
    flushed_len: int = -1  # entries of the stored window (-1: unknown)
    state_stored: bool = False  # the backing store holds a state key (it has a TTL)
    renewed_at: float = float("-inf")  # clock of the last TTL renewal in the backing store
    malformed: int = 0  # window entries left out at load, reported at the next window read


class HeldUsers:
    """The held users, least recently used first."""

    def __init__(self, max_users: int) -> None:
        self.max_users = max_users  # 0: nothing is kept between batches
        self.users: OrderedDict[str, HeldUser] = OrderedDict()
        self.pending: set[str] = set()  # changed since their last write-behind

    def __len__(self) -> int:
        return len(self.users)

    def get(self, user_key: str) -> HeldUser | None:
        held = self.users.get(user_key)
        if held is not None:
            self.users.move_to_end(user_key)
        return held

    def add(self, user_key: str, held: HeldUser) -> None:
        self.users[user_key] = held
        self.users.move_to_end(user_key)

    def drop(self, user_keys: Iterable[str]) -> int:
        dropped = 0
        for user_key in user_keys:
            dropped += self.users.pop(user_key, None) is not None
            self.pending.discard(user_key)
        return dropped

    def drop_partitions(self, partitions: Collection[int]) -> int:
        """Forget every user of ``partitions`` (revoked, or fenced out); returns how many."""
        return self.drop([user for user, held in self.users.items() if held.partition in partitions])

    def partitions_of(self, user_keys: Iterable[str]) -> set[int]:
        return {held.partition for user in user_keys if (held := self.users.get(user)) is not None}

    def clear(self) -> int:
        count = len(self.users)
        self.users.clear()
        self.pending.clear()
        return count

    def evict(self) -> int:
        """Drop the least recently used clean users beyond ``max_users``; returns how many."""
        excess = len(self.users) - self.max_users
        if excess <= 0:
            return 0
        victims: list[str] = []
        for user in self.users:  # least recently used first; stops early (this runs every batch)
            if user not in self.pending:
                victims.append(user)
                if len(victims) == excess:
                    break
        return self.drop(victims)
