"""``demandstream evaluate``: judge live predictions against the events that follow them."""

from __future__ import annotations

import asyncio
import json
import logging
import signal

import click

from stream.config import get_settings

logger = logging.getLogger(__name__)


async def _run(idle_stop_s: float | None) -> dict[str, dict[str, float]]:
    from stream.evaluation.service import Evaluator

    evaluator = Evaluator(get_settings())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await evaluator.run(stop, idle_stop_s=idle_stop_s)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return evaluator.publish()


@click.command()
@click.option(
    "--idle-stop",
    "idle_stop_s",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Stop once nothing arrived for this many seconds and print the window's numbers (a replay check).",
)
def evaluate(idle_stop_s: float | None) -> None:
    """Online metrics per model version (MRR/Recall of the next category, intent calibration),
    next to the repeat baseline on the same events, on /metrics (DEMANDSTREAM_EVALUATION_PORT)."""
    summary = asyncio.run(_run(idle_stop_s))
    if idle_stop_s is not None:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
