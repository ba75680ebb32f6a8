"""The feature specification: fixed by a model at training time, stored in its manifest, and
checked by the worker before the model may serve."""

from __future__ import annotations

from typing import Final, Literal

import msgspec

# Time buckets in seconds; log-spaced because what matters is "seconds vs minutes vs hours vs days".
DEFAULT_GAP_EDGES_S: Final = (2, 10, 30, 60, 180, 600, 1800, 3600, 3 * 3600, 8 * 3600, 86400, 3 * 86400)
DEFAULT_AGE_EDGES_S: Final = (60, 300, 900, 1800, 3600, 3 * 3600, 8 * 3600, 86400, 2 * 86400, 4 * 86400)
DEFAULT_PRICE_EDGES: Final = (1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 3000.0, 10000.0)


class FeatureSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything that turns events into model inputs, except the vocabularies.

    >>> spec = FeatureSpec()
    >>> spec.static_width, spec.step_width
    (10, 12)
    >>> spec.n_gap_buckets, spec.n_age_buckets
    (14, 12)
    """

    version: int = 1
    target: Literal["category", "item"] = "category"  # what the demand head ranks (and the pointer reads)
    window: int = 50
    text_tokens: int = 5
    text_buckets: int = 4096
    hour_offset_h: int = 8
    gap_edges_s: tuple[int, ...] = DEFAULT_GAP_EDGES_S
    age_edges_s: tuple[int, ...] = DEFAULT_AGE_EDGES_S
    price_edges: tuple[float, ...] = DEFAULT_PRICE_EDGES

    @property
    def static_width(self) -> int:
        """Columns of a stored row: type, category, item, price, rating, then text tokens."""
        return 5 + self.text_tokens

    @property
    def step_width(self) -> int:
        """Columns of a model step: the static row plus gap and hour buckets."""
        return self.static_width + 2

    @property
    def n_gap_buckets(self) -> int:
        return len(self.gap_edges_s) + 2  # 0 = first event of the user

    @property
    def n_age_buckets(self) -> int:
        return len(self.age_edges_s) + 2  # 0 = padding

    @property
    def n_price_buckets(self) -> int:
        return len(self.price_edges) + 2  # 0 = no price
