"""Bulk simulation straight to a file: millions of events per minute, vectorised with numpy and
pyarrow, for training-scale benchmarks (``demandstream simulate --bulk``).

The per-shopper simulator (``shoppers.py``) writes rich events (queries, reviews, prices) one at a
time, a few tens of thousands per second: right for Kafka demos, too slow for a 10M-event training
file. This one draws behaviour-shaped columns a chunk at a time: Zipf item popularity, items nested
in categories, users of log-normal activity, and repeat views (a shopper returns to the item they
just saw), with event time rising through the file. Rows are contract events (``event_id``,
``user_id``, ``ts``, ``type``, ``item_id``, ``category_id``), written as JSON lines or Parquet.
``malformed`` breaks that fraction of rows on purpose (the loader must name each and keep the rest).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

log = logging.getLogger(__name__)

CHUNK: Final = 1_000_000
TYPES: Final = ("view", "cart", "fav", "purchase")
TYPE_P: Final = (0.86, 0.07, 0.04, 0.03)
REPEAT_P: Final = 0.35  # chance an event repeats the shopper's previous item
DAY_MS: Final = 86_400_000


@dataclass(frozen=True)
class BulkSpec:
    events: int
    users: int
    items: int
    categories: int
    seed: int
    start_ms: int
    days: float = 9.0
    malformed: float = 0.0


def _columns(spec: BulkSpec, begin: int, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Rows ``begin .. begin + size`` as numpy columns (ids as integers)."""
    ranks = np.arange(1, spec.items + 1, dtype=np.float64)
    item_p = ranks**-1.05
    item_p /= item_p.sum()
    activity = np.random.default_rng(spec.seed + 1).lognormal(0.0, 1.0, spec.users)
    user = np.sort(rng.choice(spec.users, size=size, p=activity / activity.sum()))
    span = spec.days * DAY_MS * size / spec.events
    offset = spec.start_ms + spec.days * DAY_MS * begin / spec.events
    ts = (offset + rng.random(size) * span).astype(np.int64)  # rising through the file by chunk
    order = np.lexsort((ts, user))
    user, ts = user[order], ts[order]
    item = rng.choice(spec.items, size=size, p=item_p)
    first = np.r_[True, user[1:] != user[:-1]]
    own = first | (rng.random(size) >= REPEAT_P)
    source = np.maximum.accumulate(np.where(own, np.arange(size), -1))
    item = item[source]
    category = (item * 2654435761) % spec.categories  # a fixed hash: every item has one category
    kind = rng.choice(len(TYPES), size=size, p=TYPE_P)
    return {"index": np.arange(begin, begin + size), "user": user, "ts": ts, "type": kind,
            "item": item, "category": category}  # fmt: skip


def tables(spec: BulkSpec) -> Iterator[Any]:
    """pyarrow tables of at most :data:`CHUNK` contract-event rows."""
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    rng = np.random.default_rng(spec.seed)
    for begin in range(0, spec.events, CHUNK):
        size = min(CHUNK, spec.events - begin)
        cols = _columns(spec, begin, size, rng)

        def ids(prefix: str, values: np.ndarray) -> Any:
            return pc.binary_join_element_wise(prefix, pc.cast(pa.array(values), pa.string()), "")

        user_ids = ids("u", cols["user"])
        if spec.malformed > 0:  # an empty user id breaks the contract (min length 1)
            broken = rng.random(size) < spec.malformed
            user_ids = pc.if_else(pa.array(broken), "", user_ids)
        yield pa.table({
            "event_id": ids(f"s{spec.seed}-", cols["index"]),
            "user_id": user_ids,
            "ts": pa.array(cols["ts"]),
            "type": pa.array(np.asarray(TYPES, dtype=object)[cols["type"]], pa.string()),
            "item_id": ids("i", cols["item"]),
            "category_id": ids("c", cols["category"]),
        })  # fmt: skip


def write_bulk(spec: BulkSpec, path: Path) -> int:
    """Write ``spec.events`` rows to ``path`` (``.parquet``: Parquet, else JSON lines); returns rows."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    tmp = path.with_name(path.name + ".tmp")
    written = 0
    writer = None
    try:
        with tmp.open("wb") as out:
            for table in tables(spec):
                if path.suffix == ".parquet":
                    writer = writer or pq.ParquetWriter(out, table.schema)
                    writer.write_table(table)
                else:
                    lines = pc.binary_join_element_wise(
                        '{"event_id":"', table["event_id"], '","user_id":"', table["user_id"], '","ts":',
                        pc.cast(table["ts"], "string"), ',"type":"', table["type"], '","item_id":"',
                        table["item_id"], '","category_id":"', table["category_id"], '"}\n', "",
                    )  # fmt: skip
                    out.write("".join(lines.to_pylist()).encode())
                written += table.num_rows
                log.info("wrote %d of %d events", written, spec.events)
            if writer is not None:
                writer.close()
        tmp.replace(path)  # a half-written file is never mistaken for the data
    finally:
        tmp.unlink(missing_ok=True)
    return written
