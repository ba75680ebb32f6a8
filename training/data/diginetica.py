"""DIGINETICA (CIKM Cup 2016) item views: ``session_id;user_id;item_id;timeframe;eventdate``.

Anonymous sessions (``user_id`` = ``NA``) become their own user, ``session:<id>``, so that the
per-user pipeline serves a session dataset unchanged. There is no category column: events carry
``category_id=None`` and the item is the prediction target (``--target item``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final

from stream.contracts import Event
from training.data._rows import decode_text, numbered_lines, to_event
from training.data.bad_rows import BadRows
from training.data.exceptions import DataFormatError

HEADER: Final = "session_id;user_id;item_id;timeframe;eventdate"
_DAY_MS: Final = 86_400_000


def load_diginetica(path: Path, *, bad_rows: BadRows | None = None) -> Iterator[Event]:
    """Yield one ``view`` event per row.

    The dataset gives a session's date and each view's offset in ms from the session start, so
    ``ts = eventdate (UTC midnight) + timeframe``: exact order within a session, and day order
    across sessions.
    """
    sink = bad_rows or BadRows(strict=True)
    lines = numbered_lines(path)
    first = next(lines, None)
    if first is None:
        return
    header = decode_text(path, first[0], first[1]).lstrip("\ufeff").strip()
    if header != HEADER:
        # Without the header the columns cannot be trusted: one error for the whole file.
        raise DataFormatError(str(path), first[0], f"expected header {HEADER!r}, got {header[:80]!r}")
    for number, line in lines:
        try:
            yield _parse_row(path, number, line)
        except DataFormatError as exc:
            sink.record(exc)


def _parse_row(path: Path, number: int, line: bytes) -> Event:
    fields = [f.strip() for f in decode_text(path, number, line).split(";")]
    if len(fields) != 5:
        raise DataFormatError(str(path), number, f"expected 5 ';'-separated fields, got {len(fields)}")
    session, user, item, timeframe, eventdate = fields
    if not session or not item:
        raise DataFormatError(str(path), number, "empty session_id or item_id")
    if not timeframe.isdigit():
        raise DataFormatError(str(path), number, f"timeframe {timeframe!r} is not milliseconds")
    try:
        day = date.fromisoformat(eventdate)
    except ValueError:
        raise DataFormatError(str(path), number, f"eventdate {eventdate!r} is not YYYY-MM-DD") from None
    day_ms = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000
    if int(timeframe) >= 30 * _DAY_MS:
        raise DataFormatError(str(path), number, f"timeframe {timeframe} ms is longer than a month")
    record = {
        "event_id": f"{path.name}:{number}",
        "user_id": f"session:{session}" if user in ("", "NA") else user,
        "ts": day_ms + int(timeframe),
        "type": "view",
        "item_id": item,
        "category_id": None,
    }
    return to_event(path, number, record)
