"""Errors of the featurizer."""


class FeatureError(Exception):
    """Base class of featurizer errors."""


class VocabularyFormatError(FeatureError):
    """A vocabulary file is not what :meth:`Vocabulary.load` expects."""
