"""The per-user window and model-state store in Redis (layout: docs/redis-layout.md)."""

from stream.store.exceptions import StoreError, StoreProtocolError, StoreUnavailable
from stream.store.memory_store import MemoryWindowStore
from stream.store.protocol import WindowStateStore
from stream.store.window_store import (
    AppendResult,
    StateWrite,
    Window,
    WindowAppend,
    WindowStore,
)

__all__ = [
    "AppendResult",
    "MemoryWindowStore",
    "StateWrite",
    "StoreError",
    "StoreProtocolError",
    "StoreUnavailable",
    "Window",
    "WindowAppend",
    "WindowStateStore",
    "WindowStore",
]
