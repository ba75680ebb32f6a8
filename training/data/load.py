"""One entry point for every supported source: ``load_events(path, format)``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final, Literal, get_args

from stream.config import Settings
from stream.contracts import Event
from training.data.bad_rows import BadRows
from training.data.columns import EventColumns, build_columns
from training.data.diginetica import load_diginetica
from training.data.exceptions import DataError
from training.data.jsonl import load_jsonl
from training.data.kafka import iter_kafka
from training.data.parquet import load_parquet
from training.data.parquet_columns import read_parquet_columns
from training.data.taobao import TAOBAO_TS_BOUNDS_MS, load_taobao

DataFormat = Literal["jsonl", "taobao", "diginetica", "kafka", "parquet"]
DATA_FORMATS: Final[tuple[str, ...]] = get_args(DataFormat)


def load_events(
    source: str | Path,
    data_format: DataFormat,
    *,
    bad_rows: BadRows | None = None,
    settings: Settings | None = None,
) -> Iterator[Event]:
    """Stream the events of ``source``: a file path, or for ``kafka`` a topic name ("" = the
    configured events topic)."""
    if data_format == "kafka":
        return iter_kafka(settings or Settings(), str(source) or None, bad_rows=bad_rows)
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if data_format == "jsonl":
        return load_jsonl(path, bad_rows=bad_rows)
    if data_format == "taobao":
        return load_taobao(path, bad_rows=bad_rows)
    if data_format == "diginetica":
        return load_diginetica(path, bad_rows=bad_rows)
    if data_format == "parquet":
        return load_parquet(path, bad_rows=bad_rows)
    raise DataError(f"unknown data format {data_format!r}; expected one of {DATA_FORMATS}")


def load_columns(
    source: str | Path,
    data_format: DataFormat,
    *,
    bad_rows: BadRows | None = None,
    settings: Settings | None = None,
) -> EventColumns:
    """:func:`load_events` into the columnar table: Parquet column by column (pyarrow), the text
    formats and Kafka through their row decoders, a chunk of events at a time."""
    if data_format == "parquet":
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        return read_parquet_columns(path, bad_rows=bad_rows)
    return build_columns(load_events(source, data_format, bad_rows=bad_rows, settings=settings))


def default_ts_bounds(data_format: DataFormat) -> tuple[int | None, int | None]:
    """Known-valid time window of a dataset ([start, end) epoch ms, ``None`` = open).

    >>> default_ts_bounds("diginetica")
    (None, None)
    """
    if data_format == "taobao":
        return TAOBAO_TS_BOUNDS_MS
    return (None, None)
