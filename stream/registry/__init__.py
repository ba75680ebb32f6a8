"""Versioned model registry: ONNX graph + vocabularies + manifest, with an atomic current pointer."""

from stream.registry.exceptions import ModelVerificationError, RegistryError
from stream.registry.manifest import Manifest, TensorSpec
from stream.registry.model import LoadedModel, StepOutput
from stream.registry.registry import ModelRegistry, validate_version_name

__all__ = [
    "LoadedModel",
    "Manifest",
    "ModelRegistry",
    "ModelVerificationError",
    "RegistryError",
    "StepOutput",
    "TensorSpec",
    "validate_version_name",
]
