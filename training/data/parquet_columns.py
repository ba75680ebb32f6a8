"""Parquet straight into the columnar table, a record batch at a time, without a Python object per
row: the contract's field rules are checked with pyarrow compute on whole columns, ids are
interned through each batch's dictionary, and only rows that fail a check go through the
per-row path (``training/data/parquet.py``), which names them by file and row exactly as before.

If a batch's column types are not the plain ones (strings, integers, floats) or a flagged row
turns out valid under the contract's own check, that batch is read by the per-row path instead,
so the result is always what the per-row loader gives (tests/unit/test_parquet_columns.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np

from stream.contracts import EVENT_TYPES
from training.data import parquet as per_row
from training.data._rows import to_event
from training.data.bad_rows import BadRows
from training.data.columns import TYPE_CODE, ColumnBuilder, EventColumns
from training.data.exceptions import DataFormatError

_ID_MAX: Final = 128
_TEXT_MAX: Final = 4096


def read_parquet_columns(path: Path, *, bad_rows: BadRows | None = None) -> EventColumns:
    """Every valid row of a Parquet file of contract events, as columns, in file order."""
    sink = bad_rows or BadRows(strict=True)
    builder, number = ColumnBuilder(), 0
    for batch in per_row.iter_event_batches(path):
        if not _append_batch(builder, batch, path, number, sink):
            for i, row in enumerate(batch.to_pylist(), start=number + 1):
                try:
                    builder.add(to_event(path, i, {k: v for k, v in row.items() if v is not None}))
                except DataFormatError as exc:
                    sink.record(exc)
        number += batch.num_rows
    return builder.build()


def _column(batch: Any, name: str) -> Any:
    """The column, or all nulls of the field's type where the file has none (or only nulls)."""
    import pyarrow as pa  # type: ignore[import-untyped]

    index = batch.schema.get_field_index(name)
    column = batch.column(index) if index >= 0 else None
    if column is None or pa.types.is_null(column.type):
        kind = {"rating": pa.int8(), "price": pa.float64(), "ts": pa.null()}.get(name, pa.string())
        return pa.nulls(batch.num_rows, kind)
    return column


def _valid_mask(batch: Any) -> np.ndarray | None:
    """Rows that pass the contract's field rules, or ``None`` when a column type is not a plain one."""
    import pyarrow as pa
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    def is_string(a: Any) -> bool:
        return bool(pa.types.is_string(a.type) or pa.types.is_large_string(a.type))

    ids = {name: _column(batch, name) for name in ("event_id", "user_id", "item_id", "category_id", "type")}
    texts = {name: _column(batch, name) for name in ("query", "text")}
    ts, rating, price = (_column(batch, name) for name in ("ts", "rating", "price"))
    if not all(is_string(a) for a in (*ids.values(), *texts.values())):
        return None
    if not (pa.types.is_integer(ts.type) and pa.types.is_integer(rating.type)):
        return None
    if not (pa.types.is_integer(price.type) or pa.types.is_floating(price.type)):
        return None
    ok = pc.and_(pc.is_valid(ts), pc.greater_equal(ts, 0))
    for name, a in ids.items():
        length = pc.utf8_length(a)
        fits = pc.and_(pc.greater_equal(length, 1), pc.less_equal(length, _ID_MAX))
        ok = pc.and_(ok, fits if name in ("event_id", "user_id", "type") else pc.or_kleene(pc.is_null(a), fits))
    ok = pc.and_(ok, pc.is_in(ids["type"], value_set=pa.array(EVENT_TYPES)))
    for a in texts.values():
        ok = pc.and_(ok, pc.or_kleene(pc.is_null(a), pc.less_equal(pc.utf8_length(a), _TEXT_MAX)))
    ok = pc.and_(ok, pc.or_kleene(pc.is_null(rating), pc.and_(pc.greater_equal(rating, 1), pc.less_equal(rating, 5))))
    in_range = pc.and_(pc.greater_equal(price, 0), pc.less_equal(price, 1e9))  # NaN fails both: per-row decides
    ok = pc.and_(ok, pc.or_kleene(pc.is_null(price), in_range))
    return np.asarray(ok.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _append_batch(builder: ColumnBuilder, batch: Any, path: Path, number: int, sink: BadRows) -> bool:
    """Append ``batch``'s valid rows and record its bad ones; ``False``: read it row by row instead."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ok = _valid_mask(batch)
    if ok is None:
        return False
    flagged = np.flatnonzero(~ok)
    errors: list[DataFormatError] = []
    if len(flagged):
        rows = batch.take(pa.array(flagged)).to_pylist()
        for i, row in zip(flagged.tolist(), rows, strict=True):
            try:
                to_event(path, number + i + 1, {k: v for k, v in row.items() if v is not None})
            except DataFormatError as exc:
                errors.append(exc)
            else:
                return False  # a stricter check than the contract's: the per-row path decides
    good = batch.filter(pa.array(ok))
    kind = _column(good, "type")

    def numbers(name: str, kind_: Any, fill: float) -> np.ndarray:
        return np.asarray(pc.cast(_column(good, name), kind_).fill_null(fill).to_numpy(zero_copy_only=False))

    text = pc.if_else(pc.equal(kind, "search"), _column(good, "query"), _column(good, "text"))
    builder.append(
        user=_dictionary(_column(good, "user_id")),
        ts=np.asarray(_column(good, "ts").to_numpy(zero_copy_only=False), dtype=np.int64),
        etype=_type_codes(kind),
        item=_dictionary(_column(good, "item_id")),
        category=_dictionary(_column(good, "category_id")),
        price=numbers("price", pa.float64(), np.nan),
        rating=numbers("rating", pa.int8(), 0),
        text=_dictionary(pc.if_else(pc.equal(pc.utf8_length(text), 0), pa.scalar(None, pa.string()), text)),
    )  # fmt: skip
    for error in errors:
        sink.record(error)
    return True


def _dictionary(values: Any) -> tuple[list[str], np.ndarray]:
    """``(distinct strings, index of each row's string, -1 for null)``."""
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(values)
    indices = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    return encoded.dictionary.to_pylist(), np.asarray(indices, dtype=np.int32)


def _type_codes(kind: Any) -> np.ndarray:
    tokens, indices = _dictionary(kind)
    lut = np.asarray([TYPE_CODE[t] for t in tokens], dtype=np.int8)
    codes: np.ndarray = lut[indices]
    return codes
