"""The Parquet format: contract columns read batch by batch, bad rows named by file and row."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.data import BadRows, DataError, DataFormatError, load_events
from training.data import parquet as parquet_module


def _write(path: Path, n: int, bad: set[int]) -> None:
    rows = [
        {
            "event_id": f"e{i}",
            "user_id": f"u{i % 7}" if i not in bad else "",  # an empty user id breaks the contract
            "ts": 1_700_000_000_000 + i * 1000,
            "type": "view" if i % 3 else "cart",
            "item_id": f"i{i % 50}",
            "category_id": f"c{i % 5}",
            "extra": "ignored",
        }
        for i in range(n)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=40)


def test_parquet_keeps_every_good_row_and_names_each_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parquet_module, "BATCH_ROWS", 16)  # bad rows fall in several batches
    path = tmp_path / "events.parquet"
    bad = {3, 57, 58, 199}
    _write(path, 200, bad)
    sink = BadRows(strict=False)
    events = list(load_events(path, "parquet", bad_rows=sink))
    assert [e.event_id for e in events] == [f"e{i}" for i in range(200) if i not in bad]
    assert events[1].type == "view" and events[0].type == "cart" and events[0].category_id == "c0"
    assert sink.count == len(bad)
    assert [str(e).split(":")[:2] for e in sink.examples] == [[str(path), str(i + 1)] for i in sorted(bad)]


def test_parquet_strict_raises_on_the_first_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    _write(path, 20, {5})
    with pytest.raises(DataFormatError, match=r"events\.parquet:6:"):
        list(load_events(path, "parquet"))


def test_a_file_that_is_not_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    path.write_text("not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        list(load_events(path, "parquet"))
