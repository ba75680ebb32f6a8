"""Errors raised by the local development infrastructure."""

from __future__ import annotations

from stream.exceptions import DemandstreamError


class DevInfraError(DemandstreamError, RuntimeError):
    """Base class of every error of :mod:`tools.devinfra`."""


class BinaryNotFound(DevInfraError):
    """A server binary (tansu, redis-server) is not installed where we look for it."""


class ServiceStartError(DevInfraError):
    """A server process exited early or did not answer before its deadline."""


class TopicCreationError(DevInfraError):
    """The broker refused to create a topic (other than because it already exists)."""


class StateFileError(DevInfraError):
    """The ``dev up`` state file is missing or unreadable."""
