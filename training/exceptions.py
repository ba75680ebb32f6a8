"""Errors of the offline trainer (data errors live in :mod:`training.data.exceptions`)."""

from __future__ import annotations

from stream.exceptions import DemandstreamError


class TrainingError(DemandstreamError):
    """Base class of the trainer's errors."""


class SplitError(TrainingError):
    """Time-split boundaries that cannot be used (unparsable date, train end after valid end)."""


class EvaluationError(TrainingError):
    """Predictions and targets that cannot be scored together (shapes, reserved indices)."""


class ExportError(TrainingError):
    """The ONNX export failed or does not reproduce the trained network (parity)."""


class PromotionRefused(TrainingError):
    """A new model scored worse than the serving one on the same test data."""
