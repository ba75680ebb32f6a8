"""The model-independent window row: the raw fields the featurizer needs, as compact msgpack.

A row is written once per event into the user's Redis window and outlives models: a new model
(with other vocabularies) re-encodes the same rows with its own :class:`EventEncoder` settings.
Review/search text is stored only as its first segmented words, never as raw text.

>>> from stream.contracts import Event
>>> row = encode_row(Event(event_id="e", user_id="u", ts=5, type="search", query="蓝牙耳机 降噪"))
>>> decode_rows([row])[0].words
('蓝牙', '耳机', '降噪')
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np

from stream.contracts import Event
from stream.features import EventEncoder, StaticColumn
from stream.features.encode import TYPE_INDEX
from stream.features.text import hash_token, segment
from stream.worker.exceptions import CodecError

# Words kept per event: models read the first `text_tokens` distinct hashed words (5 by
# default); the margin covers larger future specs and hash collisions among the first words.
MAX_WORDS = 16


class WindowRow(msgspec.Struct, array_like=True, omit_defaults=True, frozen=True):
    """One stored event; array_like keeps field names off the wire (a row is ~20-60 bytes)."""

    type: str
    ts: int
    category_id: str | None = None
    item_id: str | None = None
    price: float | None = None
    rating: int | None = None
    words: tuple[str, ...] = ()


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(WindowRow)


def row_of(event: Event) -> WindowRow:
    """The stored fields of ``event`` (the text reduced to its first :data:`MAX_WORDS` words)."""
    text = event.query if event.type == "search" else event.text
    words: tuple[str, ...] = ()
    if text:
        # Distinct, in order: the featurizer keeps the first distinct words only.
        words = tuple(dict.fromkeys(segment(text)))[:MAX_WORDS]
    return WindowRow(
        type=event.type,
        ts=event.ts,
        category_id=event.category_id,
        item_id=event.item_id,
        price=event.price,
        rating=event.rating,
        words=words,
    )


def encode_row(event: Event) -> bytes:
    """The window row bytes of ``event``."""
    return _encoder.encode(row_of(event))


def encode_window_row(row: WindowRow) -> bytes:
    """The bytes of an already built row (the worker keeps the row for the model step)."""
    return _encoder.encode(row)


def decode_rows(blobs: Sequence[bytes]) -> list[WindowRow]:
    """Decode stored rows; a corrupt row raises :class:`CodecError`."""
    try:
        return [_decoder.decode(blob) for blob in blobs]
    except msgspec.DecodeError as exc:
        raise CodecError(f"window row does not decode: {exc}") from exc


def static_rows(rows: Sequence[WindowRow], encoder: EventEncoder) -> np.ndarray:
    """``(n, static_width)`` int32 rows, equal to ``encoder.static_row`` of the original events.

    tests/unit/test_worker_codecs.py checks that equality, which is what keeps serving from
    stored rows free of skew against training from raw events.
    """
    spec = encoder.spec
    out = np.zeros((len(rows), spec.static_width), dtype=np.int32)
    if not rows:
        return out
    prices = np.array([np.nan if r.price is None else r.price for r in rows], dtype=np.float64)
    price_idx = np.searchsorted(np.asarray(spec.price_edges, dtype=np.float64), prices, side="right") + 1
    out[:, StaticColumn.PRICE] = np.where(np.isnan(prices), 0, price_idx)
    categories, items = encoder.categories, encoder.items
    # Whole columns at once: a numpy item assignment per field and row cost more than the lookups.
    out[:, StaticColumn.TYPE] = [TYPE_INDEX[r.type] for r in rows]
    out[:, StaticColumn.CATEGORY] = categories.indices([r.category_id for r in rows])
    out[:, StaticColumn.ITEM] = items.indices([r.item_id for r in rows])
    out[:, StaticColumn.RATING] = [r.rating or 0 for r in rows]
    n_tokens, buckets = spec.text_tokens, spec.text_buckets
    if not n_tokens:
        return out
    for i, row in enumerate(rows):
        if row.words:
            ids: list[int] = []
            for word in row.words:
                token = hash_token(word, buckets)
                if token not in ids:
                    ids.append(token)
                    if len(ids) == n_tokens:
                        break
            out[i, StaticColumn.TEXT : StaticColumn.TEXT + len(ids)] = ids
    return out
