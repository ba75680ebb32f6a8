"""Cleaning: drop exact duplicates and out-of-range timestamps, then one time-ordered sequence
per user, with a :class:`DataSummary` that goes into the model manifest.

>>> from stream.contracts import Event
>>> rows = [Event("a", "u1", 2000, "view", category_id="c1"),
...         Event("b", "u1", 1000, "view", category_id="c2"),
...         Event("c", "u1", 2000, "view", category_id="c1"),  # exact duplicate of "a"
...         Event("d", "u2", 99, "view", category_id="c1")]     # before the window
>>> seqs, summary = clean_events(rows, ts_bounds=(500, None))
>>> [(s.user_id, [e.event_id for e in s.events]) for s in seqs]
[('u1', ['b', 'a'])]
>>> summary.rows_dropped
{'malformed': 0, 'duplicate': 1, 'out_of_range': 1}
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec

from stream.contracts import Event
from training.data.bad_rows import BadRows


class UserSequence(msgspec.Struct, frozen=True):
    """All kept events of one user, oldest first (ties keep their input order)."""

    user_id: str
    events: list[Event]


class DataSummary(msgspec.Struct, frozen=True):
    """What the training data was, for the manifest and the report (JSON via msgspec)."""

    rows_read: int
    rows_dropped: dict[str, int]
    users: int
    events: int
    items: int
    categories: int
    event_types: dict[str, int]
    first_ts_ms: int | None
    last_ts_ms: int | None
    first_ts_utc: str | None
    last_ts_utc: str | None
    ts_bounds_ms: tuple[int | None, int | None]

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict."""
        result: dict[str, object] = msgspec.to_builtins(self)
        return result


def iso_utc(ts_ms: int | None) -> str | None:
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def clean_events(
    events: Iterable[Event],
    *,
    ts_bounds: tuple[int | None, int | None] = (None, None),
    bad_rows: BadRows | None = None,
) -> tuple[list[UserSequence], DataSummary]:
    """Group ``events`` into per-user sequences, keeping ts in ``[start, end)`` of ``ts_bounds``.

    A duplicate is the same (user, ts, type, item, category): a producer retry or a repeated
    export row carries no new behaviour, whatever its event_id. ``bad_rows`` (the loader's sink)
    only feeds the ``malformed`` count of the summary, so pass the same one to the loader.
    Users come out in order of first appearance, so the result is deterministic.
    """
    start, end = ts_bounds
    by_user: defaultdict[str, list[Event]] = defaultdict(list)
    seen: set[tuple[str, int, str, str | None, str | None]] = set()
    duplicates = out_of_range = kept = 0
    for event in events:
        if (start is not None and event.ts < start) or (end is not None and event.ts >= end):
            out_of_range += 1
            continue
        key = (event.user_id, event.ts, event.type, event.item_id, event.category_id)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        by_user[event.user_id].append(event)
        kept += 1
    del seen
    sequences = [
        UserSequence(user, sorted(user_events, key=lambda e: e.ts))  # sorted() is stable
        for user, user_events in by_user.items()
    ]
    malformed = bad_rows.count if bad_rows is not None else 0
    return sequences, summarize(
        sequences,
        rows_read=kept + duplicates + out_of_range + malformed,
        dropped={"malformed": malformed, "duplicate": duplicates, "out_of_range": out_of_range},
        ts_bounds=ts_bounds,
    )


def summarize(
    sequences: list[UserSequence],
    *,
    rows_read: int,
    dropped: dict[str, int],
    ts_bounds: tuple[int | None, int | None] = (None, None),
) -> DataSummary:
    """Counts and time range of ``sequences``."""
    items: set[str] = set()
    categories: set[str] = set()
    types: Counter[str] = Counter()
    first: int | None = None
    last: int | None = None
    n_events = 0
    for seq in sequences:
        if not seq.events:
            continue
        n_events += len(seq.events)
        first = seq.events[0].ts if first is None else min(first, seq.events[0].ts)
        last = seq.events[-1].ts if last is None else max(last, seq.events[-1].ts)
        for event in seq.events:
            types[event.type] += 1
            if event.item_id is not None:
                items.add(event.item_id)
            if event.category_id is not None:
                categories.add(event.category_id)
    return DataSummary(
        rows_read=rows_read,
        rows_dropped=dropped,
        users=len(sequences),
        events=n_events,
        items=len(items),
        categories=len(categories),
        event_types=dict(sorted(types.items())),
        first_ts_ms=first,
        last_ts_ms=last,
        first_ts_utc=iso_utc(first),
        last_ts_utc=iso_utc(last),
        ts_bounds_ms=ts_bounds,
    )
