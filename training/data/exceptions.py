"""Errors raised while reading and preparing training data."""

from __future__ import annotations

from stream.exceptions import DemandstreamError


class DataError(DemandstreamError):
    """Base class of the errors of :mod:`training.data`."""


class DataFormatError(DataError):
    """A row of a data source is malformed; names the source and the (1-based) line.

    >>> str(DataFormatError("events.csv", 7, "expected 5 fields, got 3"))
    'events.csv:7: expected 5 fields, got 3'
    """

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"{source}:{line}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


class TooManyBadRowsError(DataError):
    """Skip-and-count mode gave up: more rows were malformed than the caller tolerates."""


class KafkaReplayError(DataError):
    """The events topic could not be replayed (unknown topic, broker unreachable)."""
