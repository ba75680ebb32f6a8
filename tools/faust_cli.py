"""``demandstream faust-worker``: the worker's batch processor inside a faust-streaming agent."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import click

from stream.config import Settings, get_settings
from tools.exceptions import ToolError

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'demandstream[faust]'"


class FaustMissing(ToolError):
    """faust-streaming is not installed (it comes with the ``faust`` extra)."""


async def run_faust_worker(settings: Settings, *, duration_s: float | None) -> int:
    """Run the adapter with signal handling; returns the records whose outputs were acknowledged."""
    try:
        from tools.faust_app import FaustAdapter
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] not in ("faust", "mode"):
            raise
        raise FaustMissing(
            f"faust-streaming is not installed: it comes with the `faust` extra, {INSTALL_HINT}"
        ) from exc

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    timer = loop.call_later(duration_s, stop.set) if duration_s is not None else None
    adapter = FaustAdapter(settings)
    try:
        await adapter.run(stop)
    finally:
        if timer is not None:
            timer.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return adapter.records_done


@click.command("faust-worker")
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
@click.option("--group", "consumer_group", default=None, help="faust app id = consumer group (default: settings).")
def faust_worker(
    duration_s: float | None,
    batch_max_size: int | None,
    batch_linger_ms: int | None,
    http_port: int | None,
    consumer_group: str | None,
) -> None:
    """Run the stream worker's batch processor as a faust-streaming app until SIGTERM/SIGINT or --duration.

    Needs the `faust` extra. See docs/faust.md for what differs from `demandstream worker`.
    """
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
    done = asyncio.run(run_faust_worker(settings, duration_s=duration_s))
    logger.info("faust worker exited cleanly after %d records", done)
