"""Errors of the stream worker."""

from stream.exceptions import DemandstreamError


class WorkerError(DemandstreamError):
    """Base class of the worker's errors."""


class CodecError(WorkerError):
    """A stored window row or model state blob cannot be decoded (or cannot be used).

    ``reason`` is the metric label of :class:`stream.worker.untrusted.Rejected`, when known.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class NoModelError(WorkerError):
    """The registry has no servable model, so the worker cannot start."""
