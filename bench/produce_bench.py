"""Prediction encode and produce, apart from the rest of the worker.

    nice -n 10 .venv/bin/python -m bench.produce_bench [--events 50000] [--batch 256] [--top-k 10]

1. Encode: the worker's :class:`~stream.worker.predictions.PredictionEncoder` on simulated
   events and random top-k scores, with scores at 6 significant digits (what the worker sends)
   and at full float64 text (what it sent before); µs per event and payload bytes (mean, p50, max).
2. Produce: the same payloads through the worker's :class:`~stream.worker.publish.BatchPublisher`
   to a private tansu broker, one micro-batch at a time like the worker; per record, the wall time
   of the submit (building and handing the batches to aiokafka), of the wait for the acks, and the
   process CPU time. The ack wait is wall time on the event loop, not CPU: in the worker's
   ``produce`` stage it is what made produce look dominant.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaProducer

from bench.common import N_CATEGORIES, make_topics, services, shopper_events, write_results
from stream.worker.predictions import PredictionEncoder
from stream.worker.publish import BatchPublisher, Record

logger = logging.getLogger(__name__)
TOPIC = "bench.predictions"


def encode_all(encoder: PredictionEncoder, n: int, batch: int, top_k: int) -> tuple[list[bytes], float]:
    """All ``n`` payloads and the best-of-three encode time in µs/event."""
    events = shopper_events(n, users=2000, seed=5)
    rng = np.random.default_rng(5)
    categories = rng.integers(0, N_CATEGORIES, size=(n, top_k))
    # Softmax-like scores: a few large, the rest small (their text length is what the payload carries).
    scores = np.sort(rng.dirichlet(np.ones(N_CATEGORIES) * 0.05, size=n)[:, :top_k], axis=1)[:, ::-1]
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    intent = rng.random(n).astype(np.float32)
    history = rng.integers(1, 100, size=n)
    best, out = float("inf"), list[bytes]()
    for _ in range(3):
        out = []
        started = time.perf_counter()
        for i in range(0, n, batch):
            s = slice(i, i + batch)
            out += encoder.encode(events[s], categories[s], scores[s], intent[s], history[s], 1_700_000_000_000)
        best = min(best, time.perf_counter() - started)
    return out, best / n * 1e6


async def produce(bootstrap: str, values: list[bytes], batch: int) -> dict[str, float]:
    await make_topics(bootstrap, [TOPIC], 4)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
    await producer.start()
    try:
        publisher = BatchPublisher(producer)
        records: list[Record] = [(TOPIC, f"user{i % 2000}".encode(), v) for i, v in enumerate(values)]
        await publisher.publish(records[:batch])  # metadata and connections warm
        submit = ack = 0.0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(0, len(records), batch):
            t0 = time.perf_counter()
            futures = await publisher.submit(records[i : i + batch])
            t1 = time.perf_counter()
            await asyncio.gather(*futures)
            submit, ack = submit + (t1 - t0), ack + (time.perf_counter() - t1)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await producer.stop()
    n = len(records)
    return {
        "submit_us_per_record": submit / n * 1e6,
        "ack_wait_us_per_record": ack / n * 1e6,
        "cpu_us_per_record": cpu / n * 1e6,
        "records_per_s": n / wall,
    }


async def main_async(args: argparse.Namespace) -> None:
    targets = [f"c{i}" for i in range(N_CATEGORIES)]
    rounded, rounded_us = encode_all(PredictionEncoder("bench", targets), args.events, args.batch, args.top_k)
    full, full_us = encode_all(PredictionEncoder("bench", targets, None), args.events, args.batch, args.top_k)
    results: dict[str, object] = {
        "events": args.events, "batch": args.batch, "top_k": args.top_k,
        "encode_us_per_event": {"6_digits": rounded_us, "full": full_us},
        "payload_bytes": {
            name: {"mean": statistics.fmean(map(len, v)), "p50": statistics.median(map(len, v)),
                   "max": max(map(len, v))}
            for name, v in (("6_digits", rounded), ("full", full))
        },
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="produce-bench-") as tmp:
        async with services(Path(tmp)) as svc:
            results["produce_6_digits"] = await produce(svc.bootstrap, rounded, args.batch)
            results["produce_full"] = await produce(svc.bootstrap, full, args.batch)
    sizes: dict[str, dict[str, float]] = results["payload_bytes"]  # type: ignore[assignment]
    rows = [
        ("encode µs/event (6 digits / full)", f"{rounded_us:.2f} / {full_us:.2f}"),
        ("payload bytes mean (6 digits / full)", f"{sizes['6_digits']['mean']:.0f} / {sizes['full']['mean']:.0f}"),
    ]
    for name in ("produce_6_digits", "produce_full"):
        p: dict[str, float] = results[name]  # type: ignore[assignment]
        rows.append((f"{name} submit/ack-wait/CPU µs/rec", f"{p['submit_us_per_record']:.2f} / "
                     f"{p['ack_wait_us_per_record']:.2f} / {p['cpu_us_per_record']:.2f}"))  # fmt: skip
        rows.append((f"{name} records/s", f"{p['records_per_s']:,.0f}"))
    write_results("produce_bench", results, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--top-k", type=int, default=10)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
