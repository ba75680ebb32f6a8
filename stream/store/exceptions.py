"""Errors raised by the Redis window store."""

from __future__ import annotations

from stream.exceptions import DemandstreamError


class StoreError(DemandstreamError, RuntimeError):
    """Base class of every error of :mod:`stream.store`."""


class StoreUnavailable(StoreError):
    """Redis cannot be reached (connection refused or lost, timeout) even after retries.

    The caller should not commit offsets for the batch; appends are idempotent per event_id,
    so processing the batch again later is safe.
    """


class StoreProtocolError(StoreError):
    """Redis answered, but not as the scripts promise (e.g. a script error or a bad reply)."""


class Fenced(StoreError):
    """This worker's writes for some partitions were refused: another worker owns them now.

    Raised by :meth:`~stream.store.owned.OwnedStore.flush` (and by a load that finds a newer
    owner's fence). The store has already dropped those partitions' users; the caller must not
    commit offsets for their records (the new owner replays them).
    """

    def __init__(self, partitions: frozenset[int], users: int) -> None:
        super().__init__(f"fenced out of partitions {sorted(partitions)} ({users} users refused)")
        self.partitions = partitions
        self.users = users
