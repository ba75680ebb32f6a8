"""Parquet read column by column equals the per-row loader's result: same rows, same order, same
interned ids, and the same bad rows named by file and row."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from training.data import BadRows, load_events, parquet_columns
from training.data import parquet as parquet_module
from training.data._rows import to_event
from training.data.columns import EventColumns, build_columns
from training.data.load import load_columns


def _rows(n: int) -> list[dict[str, Any]]:
    kinds = ("view", "search", "cart", "review", "purchase", "fav")
    rows: list[dict[str, Any]] = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        rows.append({
            "event_id": f"e{i}", "user_id": f"u{i % 9}", "ts": 1_700_000_000_000 + (i * 7919) % 500 * 1000,
            "type": kind, "item_id": f"i{i % 31}" if i % 4 else None, "category_id": f"c{i % 6}",
            "query": "red shoes size 42" if kind == "search" else None,
            "text": ("" if i % 5 == 0 else "too small, returned") if kind == "review" else None,
            "rating": (i % 5) + 1 if kind == "review" else None, "price": float(i % 700) + 0.5 if i % 3 else None,
        })  # fmt: skip
    bad: dict[int, dict[str, Any]] = {
        5: {"user_id": ""},  # too short
        40: {"type": "jump"},
        41: {"ts": -3},
        77: {"rating": 9},
        120: {"price": -1.0},
        121: {"item_id": "x" * 200},
        199: {"query": "q" * 5000},
    }
    for i, change in bad.items():
        rows[i].update(change)
    return rows


def _same(a: EventColumns, b: EventColumns) -> None:
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f.name
            assert x.dtype == y.dtype, f.name
        else:
            assert x == y, f.name


@pytest.mark.parametrize("dictionary", [False, True])  # a dictionary column is read by the per-row path
def test_columns_equal_the_per_row_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dictionary: bool) -> None:
    monkeypatch.setattr(parquet_module, "BATCH_ROWS", 32)  # bad rows fall in several batches
    path = tmp_path / "events.parquet"
    table = pa.Table.from_pylist(_rows(220))
    if dictionary:
        where = table.schema.get_field_index("category_id")
        table = table.set_column(where, "category_id", table["category_id"].dictionary_encode())
    pq.write_table(table, path, row_group_size=50)
    fast_sink, slow_sink = BadRows(strict=False), BadRows(strict=False)
    checked: list[int] = []

    def counted(path: Path, number: int, fields: dict[str, Any]) -> Any:
        checked.append(number)
        return to_event(path, number, fields)

    monkeypatch.setattr(parquet_columns, "to_event", counted)
    fast = load_columns(path, "parquet", bad_rows=fast_sink)
    assert len(checked) == (220 if dictionary else 7)  # good rows skip the per-row check unless the batch can't
    slow = build_columns(load_events(path, "parquet", bad_rows=slow_sink))
    _same(fast, slow)
    assert len(fast) == 220 - 7
    assert fast.texts and (fast.rating > 0).any() and np.isnan(fast.price).any()
    assert fast_sink.count == slow_sink.count == 7
    assert [str(e) for e in fast_sink.examples] == [str(e) for e in slow_sink.examples]


def test_missing_optional_columns_read_as_absent(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    rows = [{"event_id": f"e{i}", "user_id": f"u{i % 3}", "ts": 1000 + i, "type": "view"} for i in range(10)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    columns = load_columns(path, "parquet")
    _same(columns, build_columns(load_events(path, "parquet")))
    assert columns.item.tolist() == [-1] * 10 and columns.user_ids == ["u0", "u1", "u2"]
