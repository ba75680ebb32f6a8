"""The columnar event table: every loaded event as a few compact numpy columns, ids interned.

Loaders still validate row by row with the contract's own rules (so bad rows are named exactly as
before), but an :class:`~stream.contracts.Event` lives only until its chunk is appended here:
memory is ~34 bytes per event plus one copy of each distinct id and text, not a Python object
per event.

>>> from stream.contracts import Event
>>> cols = build_columns([Event("a", "u1", 5, "view", item_id="i1", category_id="c1"),
...                       Event("b", "u2", 7, "search", query="red shoes", price=9.5)])
>>> cols.user.tolist(), cols.item.tolist(), cols.text.tolist(), cols.texts
([0, 1], [0, -1], [-1, 0], ['red shoes'])
>>> e = cols.event(1)
>>> e.user_id, e.type, e.query, e.text, e.price, e.item_id
('u2', 'search', 'red shoes', None, 9.5, None)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Final

import numpy as np
from numpy.typing import NDArray

from stream.contracts import EVENT_TYPES, Event

CHUNK_ROWS: Final = 65_536
TYPE_CODE: Final[dict[str, int]] = {name: i for i, name in enumerate(EVENT_TYPES)}  # as EncodedEvents.etype
NONE: Final = -1  # code of a missing id or text


@dataclass(frozen=True)
class EventColumns:
    """One row per event. Codes index the interned lists (``NONE`` = field absent).

    ``text`` is the text the featurizer reads: the query of a search, the text of anything else.
    """

    user: NDArray[np.int32]
    ts: NDArray[np.int64]
    etype: NDArray[np.int8]  # index in EVENT_TYPES
    item: NDArray[np.int32]
    category: NDArray[np.int32]
    price: NDArray[np.float64]  # NaN = no price (float64: the featurizer's buckets see the exact value)
    rating: NDArray[np.int8]  # 0 = no rating (the contract's ratings are 1..5)
    text: NDArray[np.int32]
    user_ids: list[str]
    item_ids: list[str]
    category_ids: list[str]
    texts: list[str]

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the per-event columns (the interned lists not counted)."""
        return sum(getattr(self, f.name).nbytes for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray))

    def take(self, rows: NDArray[np.int64]) -> EventColumns:
        """The given rows, in that order, sharing the interned lists."""
        arrays = {f.name: getattr(self, f.name)[rows] for f in fields(self) if f.name not in _LISTS}
        return EventColumns(**arrays, **{name: getattr(self, name) for name in _LISTS})

    def event(self, row: int) -> Event:
        """Row ``row`` as a contract event again (``event_id`` is the row number): everything the
        featurizer reads is kept, so the event encodes exactly like the one loaded."""
        kind = EVENT_TYPES[int(self.etype[row])]
        text = self.texts[t] if (t := int(self.text[row])) != NONE else None
        price = float(self.price[row])
        return Event(
            event_id=str(row), user_id=self.user_ids[int(self.user[row])], ts=int(self.ts[row]),
            type=kind,  # type: ignore[arg-type]  # one of EVENT_TYPES by construction
            item_id=_token(self.item_ids, int(self.item[row])),
            category_id=_token(self.category_ids, int(self.category[row])),
            query=text if kind == "search" else None, text=None if kind == "search" else text,
            rating=int(self.rating[row]) or None, price=None if np.isnan(price) else price,
        )  # fmt: skip


_LISTS: Final = frozenset({"user_ids", "item_ids", "category_ids", "texts"})


def _token(tokens: list[str], code: int) -> str | None:
    return None if code == NONE else tokens[code]


class _Interner:
    """String -> dense code, in order of first appearance."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.tokens: list[str] = []

    def code(self, token: str | None) -> int:
        if token is None:
            return NONE
        code = self.codes.get(token)
        if code is None:
            code = self.codes[token] = len(self.tokens)
            self.tokens.append(token)
        return code

    def codes_of(self, coded: Coded) -> NDArray[np.int32]:
        """Global codes of rows given as ``(distinct tokens, index per row)`` (index -1 = none)."""
        tokens, indices = coded
        lut = np.asarray([self.code(t) for t in tokens] + [NONE], dtype=np.int32)
        return lut[indices]  # index -1 reads the trailing NONE


Coded = tuple[list[str], np.ndarray]


class ColumnBuilder:
    """Appends events a chunk at a time: per-event Python values live only until their chunk is
    packed into numpy arrays."""

    def __init__(self, chunk_rows: int = CHUNK_ROWS) -> None:
        self.chunk_rows = chunk_rows
        self._users, self._items, self._cats, self._texts = _Interner(), _Interner(), _Interner(), _Interner()
        self._pending: list[tuple[int, int, int, int, int, float, int, int]] = []
        self._chunks: list[tuple[np.ndarray, ...]] = []

    def add(self, event: Event) -> None:
        text = event.query if event.type == "search" else event.text
        self._pending.append((
            self._users.code(event.user_id), event.ts, TYPE_CODE[event.type], self._items.code(event.item_id),
            self._cats.code(event.category_id), np.nan if event.price is None else event.price,
            event.rating or 0, self._texts.code(text or None),
        ))  # fmt: skip
        if len(self._pending) >= self.chunk_rows:
            self._flush()

    def extend(self, events: Iterable[Event]) -> None:
        for event in events:
            self.add(event)

    def append(
        self, *, user: Coded, ts: np.ndarray, etype: np.ndarray, item: Coded, category: Coded, price: np.ndarray,
        rating: np.ndarray, text: Coded,
    ) -> None:  # fmt: skip
        """Append whole columns; an id column comes as ``(distinct tokens, index per row, -1 = none)``."""
        self._flush()  # keep the input order
        values = (self._users.codes_of(user), ts, etype, self._items.codes_of(item), self._cats.codes_of(category),
                  price, rating, self._texts.codes_of(text))  # fmt: skip
        self._chunks.append(tuple(np.asarray(v, dtype=d) for v, d in zip(values, _DTYPES, strict=True)))

    def _flush(self) -> None:
        if not self._pending:
            return
        user, ts, etype, item, cat, price, rating, text = zip(*self._pending, strict=True)
        values = (user, ts, etype, item, cat, price, rating, text)
        self._chunks.append(tuple(np.asarray(v, dtype=d) for v, d in zip(values, _DTYPES, strict=True)))
        self._pending = []

    def build(self) -> EventColumns:
        self._flush()
        columns = list(zip(*self._chunks, strict=True)) if self._chunks else [()] * len(_DTYPES)
        parts = [np.concatenate(c) if c else np.zeros(0, d) for c, d in zip(columns, _DTYPES, strict=True)]
        self._chunks = []
        user, ts, etype, item, cat, price, rating, text = parts
        return EventColumns(
            user=user, ts=ts, etype=etype, item=item, category=cat, price=price, rating=rating, text=text,
            user_ids=self._users.tokens, item_ids=self._items.tokens, category_ids=self._cats.tokens,
            texts=self._texts.tokens,
        )  # fmt: skip


_DTYPES: Final = (np.int32, np.int64, np.int8, np.int32, np.int32, np.float64, np.int8, np.int32)


def build_columns(events: Iterable[Event], chunk_rows: int = CHUNK_ROWS) -> EventColumns:
    """All ``events`` as an :class:`EventColumns` table (the loaders' iterators, streamed)."""
    builder = ColumnBuilder(chunk_rows)
    builder.extend(events)
    return builder.build()
