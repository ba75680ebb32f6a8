"""Errors of the model registry."""


class RegistryError(Exception):
    """The registry cannot do what was asked (unknown version, bad name, empty registry)."""


class ModelVerificationError(RegistryError):
    """A model version failed verification and must not serve."""
