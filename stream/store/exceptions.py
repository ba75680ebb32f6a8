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
