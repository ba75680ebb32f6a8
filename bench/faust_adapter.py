"""The native worker vs the faust adapter: the same batch processor, the same events, one run.

    .venv/bin/pip install -e '.[faust]'     # faust-streaming is an extra, not a worker dependency
    nice -n 10 .venv/bin/python -m bench.faust_adapter [--events 20000] [--rounds 2]

Starts its own tansu broker and Redis, exports a default-sized model (bench.common), then in
each round runs both sides, in alternating order (the machine's speed drifts between runs
minutes apart), each over a fresh topic holding the same N queued events and its own Redis
prefix: ``stream.worker.Worker`` (aiokafka ``getmany`` batches, publish of batch N overlapping
batch N+1) and ``tools.faust_app.FaustAdapter`` (faust ``take_events`` batches, one batch at a
time). Rates count from the first acknowledged batch to the last, so group joins and start-up
are excluded. Logs events/s per run, the medians and their ratio, and writes
bench/results/faust_adapter.json. docs/faust.md quotes the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Services, export_model, make_topics, payloads, services, shopper_events, write_results
from bench.worker_bench import pipeline, produce_all, settings_for
from stream.config import Settings

logger = logging.getLogger("bench.faust_adapter")
USERS = 400
PARTITIONS = 4
SIDES = ("native worker", "faust adapter")


async def faust_rate(settings: Settings, n: int) -> float:
    """Events/s of a :class:`FaustAdapter` over ``n`` queued events, after its first batch."""
    from tools.faust_app import FaustAdapter

    adapter = FaustAdapter(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(adapter.run(stop))
    try:
        while adapter.records_done == 0:
            if task.done():
                await task  # raises what stopped it
                raise RuntimeError("the faust adapter stopped before its first batch")
            await asyncio.sleep(0.002)
        first_at, first_n = time.perf_counter(), adapter.records_done
        while adapter.records_done < n:
            if task.done():
                await task
                raise RuntimeError(f"the faust adapter stopped after {adapter.records_done} of {n} records")
            await asyncio.sleep(0.002)
        return (adapter.records_done - first_n) / (time.perf_counter() - first_at)
    finally:
        stop.set()
        await task


async def one_run(svc: Services, registry: Path, side: str, prefix: str, events: list[tuple[bytes, bytes]]) -> float:
    topics = {k: f"{prefix}.{k}" for k in ("events", "predictions", "dlq")}
    await make_topics(svc.bootstrap, list(topics.values()), PARTITIONS)
    await produce_all(svc.bootstrap, topics["events"], events)
    settings = settings_for(svc, registry, topics, prefix)
    if side == SIDES[0]:
        return float((await pipeline(settings, len(events)))["events_per_s"])
    return await faust_rate(settings, len(events))


async def main(n: int, rounds: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ds-faust-bench-"))
    registry = workdir / "models"
    await asyncio.to_thread(export_model, registry)
    events = payloads(shopper_events(n, USERS, seed=1))
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    async with services(workdir) as svc:
        for round_ in range(rounds):
            for side in SIDES if round_ % 2 == 0 else SIDES[::-1]:
                rate = await one_run(svc, registry, side, f"fa{round_}-{SIDES.index(side)}", events)
                rates[side].append(rate)
                logger.info("round %d, %s: %.0f events/s", round_, side, rate)
    native, faust = (statistics.median(rates[side]) for side in SIDES)
    load = os.getloadavg()
    results = {"events": n, "rounds": rounds, "partitions": PARTITIONS, "events_per_s": rates,
               "native_median": native, "faust_median": faust, "native_over_faust": native / faust,
               "load_average": load}  # fmt: skip
    rows = [
        *((f"{side} (per run)", ", ".join(f"{r:,.0f}" for r in rates[side]) + " ev/s") for side in SIDES),
        ("native worker (median)", f"{native:,.0f} ev/s"),
        ("faust adapter (median)", f"{faust:,.0f} ev/s"),
        ("native / faust", f"{native / faust:.2f}x"),
        ("load average (1/5/15 min)", " / ".join(f"{x:.2f}" for x in load)),
    ]
    logger.info("wrote %s", write_results("faust_adapter", results, rows))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("aiokafka", "faust", "mode", "stream", "tools"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(main(args.events, args.rounds))


if __name__ == "__main__":
    cli()
