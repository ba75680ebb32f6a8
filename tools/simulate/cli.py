"""``demandstream simulate``: seeded shoppers into Kafka or a JSON-lines file."""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import click

from stream.config import get_settings
from stream.contracts import Event
from tools.simulate.malformed import records
from tools.simulate.output import JsonLinesSink, KafkaSink, RecordSink, SendSummary, send_records
from tools.simulate.shoppers import ShopperSimulator

logger = logging.getLogger(__name__)


def _not_after_now(events: Iterator[Event]) -> Iterator[Event]:
    """Stop once simulated time passes the wall clock: a worker would refuse future events."""
    return itertools.takewhile(lambda e: e.ts <= time.time_ns() // 1_000_000, events)


async def _run(
    sink: RecordSink,
    events: Iterator[Event],
    *,
    malformed: float,
    seed: int,
    rate: float | None,
    max_records: int | None,
    duration_s: float | None,
) -> SendSummary:
    # Ctrl-C / SIGTERM end the loop between records, so the sink still flushes what was sent.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await send_records(
            records(events, malformed, seed),
            sink,
            rate=rate,
            max_records=max_records,
            duration_s=duration_s,
            stop=stop,
        )
    finally:
        await sink.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@click.command()
@click.option("--seed", type=int, default=42, show_default=True, help="Seed: same seed, same events.")
@click.option(
    "--users",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Number of shoppers.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=200.0,
    show_default=True,
    help="Events per second; 0 = as fast as possible.",
)
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after this many events.")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds of wall time.",
)
@click.option(
    "--output",
    "output",
    default="kafka",
    show_default=True,
    help="'kafka' (topic DEMANDSTREAM_TOPIC_EVENTS), or a JSON-lines file path ('-' = stdout).",
)
@click.option("--topic", default=None, help="Kafka topic instead of the settings' events topic.")
@click.option(
    "--malformed",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Fraction of payloads to break on purpose (DLQ demos).",
)
@click.option(
    "--start-ms",
    type=int,
    default=None,
    help="Event time of the simulation's start, epoch ms (default: --backfill-hours before now).",
)
@click.option(
    "--backfill-hours",
    type=click.FloatRange(min=0),
    default=48.0,
    show_default=True,
    help="Without --start-ms, start this long ago; events stop once they would pass now.",
)
@click.option(
    "--bulk",
    is_flag=True,
    help="Write --count events straight to the --output file (.parquet: Parquet, else JSON lines), "
    "vectorised: millions of events per minute for training-scale data (tools/simulate/bulk.py).",
)
@click.option("--items", type=click.IntRange(min=1), default=200_000, show_default=True, help="With --bulk.")
@click.option("--categories", type=click.IntRange(min=1), default=5_000, show_default=True, help="With --bulk.")
def simulate(
    seed: int,
    users: int,
    rate: float,
    count: int | None,
    duration: float | None,
    output: str,
    topic: str | None,
    malformed: float,
    start_ms: int | None,
    backfill_hours: float,
    bulk: bool,
    items: int,
    categories: int,
) -> None:
    """Generate realistic, seeded shopper events (views, searches, carts, favourites,
    purchases, Chinese queries and reviews) into Kafka or a JSON-lines file."""
    now_ms = time.time_ns() // 1_000_000
    if bulk:
        if output in ("kafka", "-") or count is None:
            raise click.UsageError("--bulk writes --count events to a file: give --count and --output PATH")
        from tools.simulate.bulk import BulkSpec, write_bulk

        started = time.monotonic()
        spec = BulkSpec(count, users, items, categories, seed, start_ms if start_ms is not None else now_ms
                        - int(backfill_hours * 3_600_000), malformed=malformed)  # fmt: skip
        written = write_bulk(spec, Path(output))
        elapsed = time.monotonic() - started
        logger.info("simulate --bulk: %d events to %s in %.1fs (%.0f/s)", written, output, elapsed, written / elapsed)
        return
    sim = ShopperSimulator(
        seed,
        users,
        start_ms=start_ms if start_ms is not None else now_ms - int(backfill_hours * 3_600_000),
    )
    events: Iterator[Event] = iter(sim)
    if start_ms is None:
        events = _not_after_now(events)
    sink: RecordSink = KafkaSink(get_settings(), topic) if output == "kafka" else JsonLinesSink(output)
    summary = asyncio.run(
        _run(
            sink,
            events,
            malformed=malformed,
            seed=seed,
            rate=rate or None,
            max_records=count,
            duration_s=duration,
        )
    )
    if summary.stopped_by == "exhausted":
        logger.info("simulated time reached now; for more, start earlier or simulate more users")
    logger.info(
        "simulate done: %d events (%d malformed) in %.1fs, %.0f/s, event time %s..%s, stop: %s",
        summary.sent,
        sum(summary.malformed.values()),
        summary.elapsed_s,
        summary.rate,
        summary.first_ts,
        summary.last_ts,
        summary.stopped_by,
    )
