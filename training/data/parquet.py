"""Parquet files of contract events (the usual exchange format of an offline job), read with
pyarrow one record batch at a time, so memory holds one batch, not the file.

Columns are the :class:`~stream.contracts.Event` fields (``event_id``, ``user_id``, ``ts``,
``type``, optional ``item_id``, ``category_id``, ...); extra columns are ignored. Every row is
validated with the contract's own rules; a bad one is named by file and row number (1-based, in
file order) and skipped or raised like a bad line of the text formats.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from stream.contracts import Event
from training.data._rows import to_event
from training.data.bad_rows import BadRows
from training.data.exceptions import DataError, DataFormatError

BATCH_ROWS: Final = 65_536
_FIELDS: Final = frozenset(Event.__struct_fields__)


def iter_event_batches(path: Path) -> Iterator[Any]:
    """The record batches of a Parquet file, only its contract-event columns (extra ones ignored)."""
    import pyarrow.parquet as pq  # type: ignore[import-untyped]  # the `train` extra; this format only

    try:
        reader = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid/OSError family for non-Parquet files
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    columns = [name for name in reader.schema_arrow.names if name in _FIELDS]
    return iter(reader.iter_batches(batch_size=BATCH_ROWS, columns=columns))


def load_parquet(path: Path, *, bad_rows: BadRows | None = None) -> Iterator[Event]:
    """Yield the events of a Parquet file, row by row, in file order."""
    sink = bad_rows or BadRows(strict=True)
    number = 0
    for batch in iter_event_batches(path):
        for row in batch.to_pylist():
            number += 1
            fields = {k: v for k, v in row.items() if v is not None}
            try:
                yield to_event(path, number, fields)
            except DataFormatError as exc:
                sink.record(exc)
