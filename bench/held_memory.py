"""Bytes per held user: what ``worker_max_held_users`` costs in worker memory.

    .venv/bin/python -m bench.held_memory [--users 2000] [--window 100]

Fills an :class:`~stream.store.owned.OwnedStore` (in-memory backing) with ``--users`` users
whose windows are full (``--window`` events of the benchmark's shopper stream, stored rows as
the worker writes them) and a held state each (blob + decoded arrays, the bench model's hidden
size and the default pointer window), and measures the traced allocations. No servers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import tracemalloc
from typing import Any

import numpy as np

from bench.common import HIDDEN, shopper_events, write_results
from stream.features import FeatureSpec
from stream.store import MemoryWindowStore, OwnedStore, StateWrite, WindowAppend
from stream.worker.state_codec import ModelState, encode_state
from stream.worker.window_codec import encode_row

logger = logging.getLogger("bench.held_memory")


async def fill(store: OwnedStore, users: int, window: int) -> None:
    events = shopper_events(users * window, users, seed=1)
    await store.assign({0})
    spec_window = FeatureSpec().window
    for start in range(0, len(events), 256):
        chunk = events[start : start + 256]
        items = [WindowAppend(e.user_id, e.event_id, e.ts, encode_row(e), 0) for e in chunk]
        results = await store.append_batch(items)
        newest = {item.user_key: result.seq for item, result in zip(items, results, strict=True)}
        writes = []
        for user, seq in newest.items():
            state = ModelState(
                "v1",
                seq,
                np.zeros(HIDDEN, np.float32),
                np.zeros(HIDDEN, np.float32),
                np.zeros(spec_window, np.int32),
                np.zeros(spec_window, np.int8),
                np.zeros(spec_window, np.int64),
            )
            writes.append(StateWrite(user, seq, encode_state(state), state))
        await store.write_states(writes)
        await store.flush()


async def main(users: int, window: int) -> None:
    backing = MemoryWindowStore(window_size=window, max_age_ms=10**12, ttl_ms=10**12)
    # A second copy of everything lives in the in-memory backing store: measured apart.
    store = OwnedStore(backing, window_size=window, max_age_ms=10**12, ttl_ms=10**12, max_users=users)
    gc.collect()
    tracemalloc.start()
    await fill(store, users, window)
    gc.collect()
    total, _ = tracemalloc.get_traced_memory()
    backing._users.clear()
    backing._fences.clear()
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    lengths = [len(h.window.seqs) for h in store.held.users.values()]
    row_bytes = np.mean([len(r) for h in store.held.users.values() for r in h.window.rows])
    per_user = held / len(store.held)
    results: dict[str, Any] = {
        "users": len(store.held),
        "mean_window": float(np.mean(lengths)),
        "mean_row_bytes": float(row_bytes),
        "bytes_per_held_user": per_user,
        "total_with_backing_bytes": total,
        "hidden": HIDDEN,
    }
    rows = [
        ("held users", f"{len(store.held):,} (mean window {np.mean(lengths):.0f} events, rows {row_bytes:.0f} B)"),
        ("bytes per held user", f"{per_user:,.0f} B ({per_user / 1024:.1f} KiB)"),
        ("at 10,000 held users (the default)", f"{10_000 * per_user / 2**20:,.0f} MiB"),
    ]
    write_results("held_memory", results, rows)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(main(args.users, args.window))


if __name__ == "__main__":
    cli()
