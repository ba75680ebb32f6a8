"""``demandstream worker``: run one stream worker until SIGTERM/SIGINT (or a limit)."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import click

from stream.config import Settings, get_settings

logger = logging.getLogger(__name__)


async def run_worker(settings: Settings, *, max_events: int | None, duration_s: float | None) -> int:
    """Run a worker with signal handling; returns the number of records processed."""
    from stream.worker.service import Worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    timer = loop.call_later(duration_s, stop.set) if duration_s is not None else None
    worker = Worker(settings)
    try:
        await worker.run(stop, max_records=max_events)
    finally:
        if timer is not None:
            timer.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return worker.records_done


@click.command()
@click.option("--max-events", type=click.IntRange(min=1), default=None, help="Stop after this many records.")
@click.option(
    "--duration", "duration_s", type=click.FloatRange(min=0), default=None, help="Stop after this many seconds."
)
@click.option(
    "--batch-max-size", type=click.IntRange(min=1), default=None, help="Override DEMANDSTREAM_BATCH_MAX_SIZE."
)
@click.option(
    "--batch-linger-ms", type=click.IntRange(min=0), default=None, help="Override DEMANDSTREAM_BATCH_LINGER_MS."
)
@click.option(
    "--http-port", type=click.IntRange(0, 65535), default=None, help="Override DEMANDSTREAM_HTTP_PORT (0 = off)."
)
@click.option("--group", "consumer_group", default=None, help="Override DEMANDSTREAM_CONSUMER_GROUP.")
def worker(
    max_events: int | None,
    duration_s: float | None,
    batch_max_size: int | None,
    batch_linger_ms: int | None,
    http_port: int | None,
    consumer_group: str | None,
) -> None:
    """Run a stream worker of the consumer group until SIGTERM/SIGINT, --max-events or --duration."""
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "batch_max_size": batch_max_size,
            "batch_linger_ms": batch_linger_ms,
            "http_port": http_port,
            "consumer_group": consumer_group,
        }.items()
        if value is not None
    }
    settings = Settings.model_validate({**get_settings().model_dump(), **overrides})
    done = asyncio.run(run_worker(settings, max_events=max_events, duration_s=duration_s))
    logger.info("worker exited cleanly after %d records", done)
