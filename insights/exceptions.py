"""Errors raised by the insights package."""

from __future__ import annotations

from stream.exceptions import DemandstreamError


class InsightsError(DemandstreamError):
    """Base class of every error raised by :mod:`insights`."""


class DataFileError(InsightsError):
    """An input file (review CSV, query list) is missing or not in the expected shape."""


class ResourceError(InsightsError):
    """A packaged resource (user dictionary, stop-word list) is missing or unreadable."""
