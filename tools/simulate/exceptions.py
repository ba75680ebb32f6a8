"""Errors raised by the event simulator."""

from __future__ import annotations

from stream.exceptions import DemandstreamError


class SimulateError(DemandstreamError):
    """Base class of the simulator's errors."""


class CatalogueError(SimulateError):
    """A catalogue document is invalid, or a category id is unknown."""


class SinkError(SimulateError):
    """An output (file or Kafka) could not be written."""
