"""Cleaning on the columnar table, vectorised: the same rules and the same result as
:func:`training.data.cleaning.clean_events` (proven equal by tests/unit/test_columns.py).

Out-of-range timestamps and exact duplicates (same user, ts, type, item, category; the first
row kept) are dropped; users come out in order of first appearance, contiguous, each in time
order with ties in input order. Sorting (``np.lexsort``) replaces the per-event dict and set.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
from numpy.typing import NDArray

from stream.contracts import EVENT_TYPES, Event
from training.data.bad_rows import BadRows
from training.data.cleaning import DataSummary, iso_utc
from training.data.columns import NONE, EventColumns


@dataclass(frozen=True)
class CleanedEvents:
    """Kept events, user-contiguous and time-ordered: user ``u`` owns rows ``starts[u]:starts[u+1]``."""

    columns: EventColumns
    starts: NDArray[np.int64]

    @property
    def users(self) -> int:
        return len(self.starts) - 1

    def __len__(self) -> int:
        return len(self.columns)

    @property
    def lengths(self) -> NDArray[np.int64]:
        return np.diff(self.starts)

    def user_id(self, user: int) -> str:
        return self.columns.user_ids[int(self.columns.user[self.starts[user]])]

    def histories(self) -> EventHistories:
        return EventHistories(self)


class EventHistories(Sequence[list[Event]]):
    """Each user's events as contract events again, built only when asked for (the export's
    parity check and the promotion gate step exported graphs through a few or a chunk at a time)."""

    def __init__(self, cleaned: CleanedEvents) -> None:
        self._cleaned = cleaned

    def __len__(self) -> int:
        return self._cleaned.users

    @overload
    def __getitem__(self, index: int) -> list[Event]: ...

    @overload
    def __getitem__(self, index: slice) -> list[list[Event]]: ...

    def __getitem__(self, index: int | slice) -> list[Event] | list[list[Event]]:
        if isinstance(index, slice):
            return [self[u] for u in range(*index.indices(len(self)))]
        u = index + len(self) if index < 0 else index
        if not 0 <= u < len(self):
            raise IndexError(index)
        c, s = self._cleaned.columns, self._cleaned.starts
        return [c.event(r) for r in range(int(s[u]), int(s[u + 1]))]

    def __iter__(self) -> Iterator[list[Event]]:
        return (self[u] for u in range(len(self)))


def _first_of_runs(keys: list[np.ndarray]) -> NDArray[np.bool_]:
    """True where a row starts a run of equal keys in (already sorted) columns."""
    n = len(keys[0])
    new = np.ones(n, dtype=bool)
    if n > 1:
        same = np.ones(n - 1, dtype=bool)
        for k in keys:
            same &= k[1:] == k[:-1]
        new[1:] = ~same
    return new


def _dedup_keys(columns: EventColumns, rows: NDArray[np.int64]) -> list[np.ndarray]:
    """What makes two rows the same event: user, ts, type, item, category (as ``clean_events``)."""
    return [columns.user[rows], columns.ts[rows], columns.etype[rows], columns.item[rows], columns.category[rows]]


def clean_columns(
    columns: EventColumns,
    *,
    ts_bounds: tuple[int | None, int | None] = (None, None),
    bad_rows: BadRows | None = None,
) -> tuple[CleanedEvents, DataSummary]:
    """Drop out-of-range and duplicate rows and order by user, then time (see the module doc)."""
    start, end = ts_bounds
    keep = np.ones(len(columns), dtype=bool)
    if start is not None:
        keep &= columns.ts >= start
    if end is not None:
        keep &= columns.ts < end
    rows = np.flatnonzero(keep)
    out_of_range = len(columns) - len(rows)
    keys = _dedup_keys(columns, rows)
    by_key = np.lexsort((rows, *reversed(keys)))  # key order, then input order: a run's first row is kept
    del keys
    sorted_rows = rows[by_key]
    keys = _dedup_keys(columns, sorted_rows)
    kept = np.sort(sorted_rows[_first_of_runs(keys)])
    del keys, sorted_rows, by_key, rows
    duplicates = len(keep) - out_of_range - len(kept)
    user = columns.user[kept]
    codes, first = np.unique(user, return_index=True)
    rank = np.zeros(len(columns.user_ids), dtype=np.int64)
    rank[codes[np.argsort(first, kind="stable")]] = np.arange(len(codes))  # users by first appearance
    user_rank = rank[user]
    order = np.lexsort((columns.ts[kept], user_rank))  # lexsort is stable: ties keep input order
    table = columns.take(kept[order])
    starts = np.zeros(len(codes) + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_rank, minlength=len(codes)), out=starts[1:])
    cleaned = CleanedEvents(table, starts)
    malformed = bad_rows.count if bad_rows is not None else 0
    dropped = {"malformed": malformed, "duplicate": duplicates, "out_of_range": out_of_range}
    return cleaned, summarize_columns(cleaned, rows_read=len(columns) + malformed, dropped=dropped, ts_bounds=ts_bounds)


def summarize_columns(
    cleaned: CleanedEvents, *, rows_read: int, dropped: dict[str, int], ts_bounds: tuple[int | None, int | None]
) -> DataSummary:
    """:func:`training.data.cleaning.summarize` of a cleaned table."""
    c = cleaned.columns
    types = np.bincount(c.etype, minlength=len(EVENT_TYPES))
    first = int(c.ts.min()) if len(c) else None
    last = int(c.ts.max()) if len(c) else None
    return DataSummary(
        rows_read=rows_read, rows_dropped=dropped, users=cleaned.users, events=len(c),
        items=int(np.unique(c.item[c.item != NONE]).size),
        categories=int(np.unique(c.category[c.category != NONE]).size),
        event_types=dict(sorted((EVENT_TYPES[i], int(n)) for i, n in enumerate(types) if n)),
        first_ts_ms=first, last_ts_ms=last, first_ts_utc=iso_utc(first), last_ts_utc=iso_utc(last),
        ts_bounds_ms=ts_bounds,
    )  # fmt: skip
