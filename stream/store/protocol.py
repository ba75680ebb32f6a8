"""What the worker needs of its window/state store.

:class:`~stream.store.owned.OwnedStore` is the implementation: the users of the owned partitions
held in process over a backing store (:class:`~stream.store.redis_backing.RedisBacking` in
production, :class:`~stream.store.memory_store.MemoryWindowStore` in unit tests).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from stream.store.window_store import AppendResult, StateWrite, Window, WindowAppend


class WindowStateStore(Protocol):
    """Per-user windows of encoded events and model states (semantics: docs/redis-layout.md)."""

    async def assign(self, partitions: Collection[int]) -> None:
        """Partitions were assigned to this worker (it takes a new fence epoch)."""
        ...

    async def revoke(self, partitions: Collection[int]) -> None:
        """Partitions were revoked (their users are dropped)."""
        ...

    def held_states(self, user_keys: Collection[str]) -> dict[str, Any]:
        """The caller's decoded states (``StateWrite.decoded``) still current for ``user_keys``."""
        ...

    async def append_batch(
        self, items: Sequence[WindowAppend], held_state_seqs: Mapping[str, int] | None = None
    ) -> list[AppendResult]:
        """Append events in order, idempotently per event_id; per event what the model step needs."""
        ...

    async def write_states(self, writes: Sequence[StateWrite]) -> list[bool]:
        """Store states, each only over a stored state of a lower seq; per write, whether it was stored."""
        ...

    async def read_windows(self, user_keys: Sequence[str]) -> dict[str, Window]:
        """The windows of ``user_keys``; an unknown user's is empty."""
        ...

    async def flush(self) -> None:
        """Persist the batch's changes (before its offsets are committed); may raise ``Fenced``."""
        ...

    def abandon(self) -> None:
        """Forget the changes of a batch that failed before :meth:`flush` succeeded."""
        ...

    async def ping(self) -> bool:
        """Whether the store answers; never raises."""
        ...

    async def close(self) -> None:
        """Release connections; the store reconnects if used again."""
        ...
