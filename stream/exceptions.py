"""The one exception root of the project: every package's errors derive from :class:`DemandstreamError`.

``except DemandstreamError`` catches any error of ours (never a library's or a bug's); each
package keeps its own ``exceptions`` module with its base class under this one.
"""

from __future__ import annotations


class DemandstreamError(Exception):
    """Base class of every error raised by demandstream's own code."""
