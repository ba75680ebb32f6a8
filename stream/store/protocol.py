"""What the worker needs of a window/state store: the Redis store and the in-memory one both fit.

The worker only talks to this Protocol, so the batch processor runs in unit tests against
:class:`~stream.store.memory_store.MemoryWindowStore` and in production against
:class:`~stream.store.window_store.WindowStore` (Redis, docs/redis-layout.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from stream.store.window_store import AppendResult, StateWrite, Window, WindowAppend


class WindowStateStore(Protocol):
    """Per-user windows of encoded events and model states (semantics: docs/redis-layout.md)."""

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

    async def ping(self) -> bool:
        """Whether the store answers; never raises."""
        ...

    async def close(self) -> None:
        """Release connections; the store reconnects if used again."""
        ...
