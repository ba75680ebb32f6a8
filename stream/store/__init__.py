"""The per-user window and model-state store in Redis (layout: docs/redis-layout.md)."""

from stream.store.exceptions import Fenced, StoreError, StoreProtocolError, StoreUnavailable
from stream.store.memory_store import MemoryWindowStore
from stream.store.owned import OwnedStore
from stream.store.protocol import WindowStateStore
from stream.store.redis_backing import RedisBacking
from stream.store.window_store import (
    AppendResult,
    StateWrite,
    Window,
    WindowAppend,
    WindowStore,
)

__all__ = [
    "AppendResult",
    "Fenced",
    "MemoryWindowStore",
    "OwnedStore",
    "RedisBacking",
    "StateWrite",
    "StoreError",
    "StoreProtocolError",
    "StoreUnavailable",
    "Window",
    "WindowAppend",
    "WindowStateStore",
    "WindowStore",
]
