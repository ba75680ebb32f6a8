"""Errors of the stream worker."""


class WorkerError(Exception):
    """Base class of the worker's errors."""


class CodecError(WorkerError):
    """A stored window row or model state blob cannot be decoded."""


class NoModelError(WorkerError):
    """The registry has no servable model, so the worker cannot start."""
