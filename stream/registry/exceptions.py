"""Errors of the model registry."""

from stream.exceptions import DemandstreamError


class RegistryError(DemandstreamError):
    """The registry cannot do what was asked (unknown version, bad name, empty registry)."""


class ModelVerificationError(RegistryError):
    """A model version failed verification and must not serve."""
