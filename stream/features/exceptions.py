"""Errors of the featurizer."""

from stream.exceptions import DemandstreamError


class FeatureError(DemandstreamError):
    """Base class of featurizer errors."""


class VocabularyFormatError(FeatureError):
    """A vocabulary file is not what :meth:`Vocabulary.load` expects."""
