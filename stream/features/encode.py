"""Events -> static rows (stored in the window) -> model step features and pointer-window features.

The same functions run in the trainer (over whole histories) and in the worker (per micro-batch).

>>> from stream.contracts import Event
>>> enc = EventEncoder(FeatureSpec(text_tokens=2), Vocabulary(["c1", "c2"]), Vocabulary(["i1"]))
>>> cart = Event(event_id="e", user_id="u", ts=0, type="cart", item_id="i1", category_id="c2", price=30.0)
>>> row = enc.static_row(cart)
>>> row.tolist()
[3, 3, 2, 5, 0, 0, 0]
>>> gap_buckets(np.array([1_000, 4_000, 4_000 + 3_600_000]), prev_ts_ms=None, spec=FeatureSpec()).tolist()
[0, 2, 9]
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

import numpy as np

from stream.contracts import EVENT_TYPES, Event
from stream.features.spec import FeatureSpec
from stream.features.text import text_token_ids
from stream.features.vocab import Vocabulary

TYPE_INDEX = {name: i + 1 for i, name in enumerate(EVENT_TYPES)}  # 0 = padding
N_TYPES = len(EVENT_TYPES) + 1
PURCHASE_TYPE = TYPE_INDEX["purchase"]
_MS = 1000


class StaticColumn(IntEnum):
    """Column positions of a stored row; text tokens follow from ``TEXT``."""

    TYPE = 0
    CATEGORY = 1
    ITEM = 2
    PRICE = 3
    RATING = 4
    TEXT = 5


def target_column(spec: FeatureSpec) -> StaticColumn:
    """The static column the demand head ranks and the pointer window reads."""
    return StaticColumn.ITEM if spec.target == "item" else StaticColumn.CATEGORY


class StepColumn(IntEnum):
    """Extra columns of a model step, after the static ones (offsets from ``spec.static_width``)."""

    GAP = 0
    HOUR = 1


class EventEncoder:
    """Encodes contract events with the vocabularies and spec of one model."""

    def __init__(self, spec: FeatureSpec, categories: Vocabulary, items: Vocabulary) -> None:
        self.spec = spec
        self.categories = categories
        self.items = items
        self._price_edges = np.asarray(spec.price_edges, dtype=np.float64)

    def static_row(self, event: Event) -> np.ndarray:
        """One event as an int32 row of ``spec.static_width`` columns."""
        spec = self.spec
        text = event.query if event.type == "search" else event.text
        price = 0 if event.price is None else int(np.searchsorted(self._price_edges, event.price, side="right")) + 1
        row = [
            TYPE_INDEX[event.type],
            self.categories.index(event.category_id),
            self.items.index(event.item_id),
            price,
            event.rating or 0,
            *text_token_ids(text, spec.text_tokens, spec.text_buckets),
        ]
        return np.asarray(row, dtype=np.int32)

    def static_rows(self, events: Sequence[Event]) -> np.ndarray:
        """Many events as an ``(n, static_width)`` int32 array."""
        if not events:
            return np.zeros((0, self.spec.static_width), dtype=np.int32)
        return np.stack([self.static_row(e) for e in events])


def gap_buckets(ts_ms: np.ndarray, prev_ts_ms: int | None, spec: FeatureSpec) -> np.ndarray:
    """Bucket of the time since the previous event (0 = the user's first event).

    Out-of-order events (negative gaps) fall in the smallest bucket.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    prev = np.empty_like(ts)
    has_prev = np.ones(ts.shape, dtype=bool)
    if ts.size:
        prev[1:] = ts[:-1]
        prev[0] = ts[0] if prev_ts_ms is None else prev_ts_ms
        has_prev[0] = prev_ts_ms is not None
    return gap_buckets_after(ts, prev, has_prev, spec)


def gap_buckets_after(ts_ms: np.ndarray, prev_ts_ms: np.ndarray, has_prev: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """:func:`gap_buckets` for events of any shape, each with its previous event's time given
    (the worker's padded rows); 0 where ``has_prev`` is False."""
    gaps_s = np.maximum(np.asarray(ts_ms, dtype=np.int64) - prev_ts_ms, 0) / _MS
    buckets = np.searchsorted(np.asarray(spec.gap_edges_s), gaps_s, side="right") + 1
    return np.where(has_prev, buckets, 0).astype(np.int64)


def hour_buckets(ts_ms: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Local hour of day, 1..24 (0 is padding)."""
    hours = (np.asarray(ts_ms, dtype=np.int64) // (3600 * _MS) + spec.hour_offset_h) % 24
    return (hours + 1).astype(np.int64)


def step_features(rows: np.ndarray, ts_ms: np.ndarray, prev_ts_ms: int | None, spec: FeatureSpec) -> np.ndarray:
    """Model step inputs ``(n, step_width)`` for consecutive events of one user."""
    gap = gap_buckets(ts_ms, prev_ts_ms, spec)
    hour = hour_buckets(ts_ms, spec)
    return np.concatenate([rows.astype(np.int64), gap[:, None], hour[:, None]], axis=1)


def age_buckets(age_ms: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Bucket of how long ago a window event happened (1.., 0 is reserved for padding)."""
    age_s = np.maximum(np.asarray(age_ms, dtype=np.int64), 0) / _MS
    return (np.searchsorted(np.asarray(spec.age_edges_s), age_s, side="right") + 1).astype(np.int64)


def window_features(
    categories: np.ndarray, types: np.ndarray, ts_ms: np.ndarray, spec: FeatureSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pointer inputs for the newest event of one user's window (oldest first in the arguments).

    Returns ``(category, type, age_bucket)``, each ``(spec.window,)`` int64, most recent first,
    zero-padded; ages are relative to the newest event.
    """
    w = spec.window
    cats = np.zeros(w, dtype=np.int64)
    kinds = np.zeros(w, dtype=np.int64)
    ages = np.zeros(w, dtype=np.int64)
    n = min(w, len(categories))
    if n:
        recent = slice(len(categories) - n, len(categories))
        cats[:n] = np.asarray(categories[recent])[::-1]
        kinds[:n] = np.asarray(types[recent])[::-1]
        ts = np.asarray(ts_ms[recent], dtype=np.int64)[::-1]
        ages[:n] = age_buckets(ts[0] - ts, spec)
    return cats, kinds, ages


def sequence_window_features(
    categories: np.ndarray, types: np.ndarray, ts_ms: np.ndarray, spec: FeatureSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`window_features` for every position of a whole history at once: ``(T, window)`` each.

    Row ``t`` equals ``window_features(categories[:t+1], types[:t+1], ts_ms[:t+1])``.
    """
    t_len, w = len(categories), spec.window
    back = np.arange(w)[None, :]
    src = np.arange(t_len)[:, None] - back  # position of the j-th most recent event at step t
    valid = src >= 0
    src_c = np.clip(src, 0, None)
    cats = np.where(valid, np.asarray(categories, dtype=np.int64)[src_c], 0)
    kinds = np.where(valid, np.asarray(types, dtype=np.int64)[src_c], 0)
    ts = np.asarray(ts_ms, dtype=np.int64)
    ages = np.where(valid, age_buckets(ts[:, None] - ts[src_c], spec), 0)
    return cats, kinds, ages
