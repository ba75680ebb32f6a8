"""Alibaba Taobao UserBehavior CSV: ``user,item,category,pv|cart|fav|buy,unix_seconds``, no header.

The official collection window is 2017-11-25..2017-12-03 in Beijing time; the raw file carries a
few rows outside it (clock noise), which :data:`TAOBAO_TS_BOUNDS_MS` lets the cleaning step drop.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Final

from stream.contracts import Event
from training.data._rows import decode_text, numbered_lines, to_event
from training.data.bad_rows import BadRows
from training.data.exceptions import DataFormatError

BEIJING: Final = timezone(timedelta(hours=8))
# [start, end) in epoch ms: 2017-11-25 00:00 to 2017-12-04 00:00, Beijing time.
TAOBAO_TS_BOUNDS_MS: Final[tuple[int, int]] = (
    int(datetime(2017, 11, 25, tzinfo=BEIJING).timestamp() * 1000),
    int(datetime(2017, 12, 4, tzinfo=BEIJING).timestamp() * 1000),
)
BEHAVIOUR_TO_TYPE: Final[dict[str, str]] = {
    "pv": "view",
    "cart": "cart",
    "fav": "fav",
    "buy": "purchase",
}


def load_taobao(path: Path, *, bad_rows: BadRows | None = None) -> Iterator[Event]:
    """Yield one event per row; ``event_id`` is ``<file name>:<line>`` so reloads are idempotent.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "ub.csv"
    ...     _ = p.write_text("1,2268318,2520377,pv,1511544070\\n")
    ...     [(e.event_id, e.type, e.ts, e.category_id) for e in load_taobao(p)]
    [('ub.csv:1', 'view', 1511544070000, '2520377')]
    """
    sink = bad_rows or BadRows(strict=True)
    for number, line in numbered_lines(path):
        try:
            yield _parse_row(path, number, line)
        except DataFormatError as exc:
            sink.record(exc)


def _parse_row(path: Path, number: int, line: bytes) -> Event:
    fields = decode_text(path, number, line).split(",")
    if len(fields) != 5:
        raise DataFormatError(str(path), number, f"expected 5 comma-separated fields, got {len(fields)}")
    user, item, category, behaviour, seconds = (f.strip() for f in fields)
    event_type = BEHAVIOUR_TO_TYPE.get(behaviour)
    if event_type is None:
        raise DataFormatError(str(path), number, f"unknown behaviour {behaviour!r} (pv|cart|fav|buy)")
    if not seconds.isdigit():
        raise DataFormatError(str(path), number, f"timestamp {seconds!r} is not unix seconds")
    record = {
        "event_id": f"{path.name}:{number}",
        "user_id": user,
        "ts": int(seconds) * 1000,
        "type": event_type,
        "item_id": item,
        "category_id": category,
    }
    return to_event(path, number, record)
