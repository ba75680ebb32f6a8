"""``demandstream replay``: a dataset into the events topic, in event-time order.

Order is global across users (by ``ts``; ties keep file order), as the events happened. A file that
is already in order is streamed (one pass to check, one to send: memory stays flat); otherwise it
is loaded and sorted in memory (the Taobao sample is grouped by user, so it takes this path).

The readers are the trainer's loaders (``training.data.load_events``: JSON lines, Taobao
UserBehavior, DIGINETICA), so replay and training read a file identically. They need no torch,
and they are imported inside the functions below, never at module import: ``stream`` must not
import ``training`` when it is loaded (the worker image has no ``training`` dependencies).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from stream.config import Settings, get_settings
from stream.contracts import Event, encode_event
from tools.simulate import Record
from tools.simulate.output import KafkaSink, RecordSink

if TYPE_CHECKING:
    from training.data import BadRows

logger = logging.getLogger(__name__)

REPLAY_FORMATS = ("jsonl", "taobao", "diginetica")
_MIN_SLEEP_S = 0.005  # sleeping for less than this costs more than it paces


def _loader(path: Path, data_format: str, bad_rows: BadRows) -> Callable[[], Iterator[Event]]:
    from training.data import load_events

    if data_format not in REPLAY_FORMATS:
        raise ValueError(f"unknown format {data_format!r}; expected one of {REPLAY_FORMATS}")
    return lambda: load_events(path, data_format, bad_rows=bad_rows)  # type: ignore[arg-type]


def is_time_ordered(events: Iterable[Event]) -> bool:
    """Whether timestamps never decrease (reads until the first step back).

    >>> is_time_ordered(Event(str(i), "u", ts, "view") for i, ts in enumerate([1, 2, 2, 5]))
    True
    >>> is_time_ordered(Event(str(i), "u", ts, "view") for i, ts in enumerate([3, 1]))
    False
    """
    previous = -1
    for event in events:
        if event.ts < previous:
            return False
        previous = event.ts
    return True


def events_in_time_order(path: Path, data_format: str, *, strict: bool = False) -> tuple[Iterator[Event], BadRows]:
    """The file's valid events in event-time order, and the tally of rows the loader skipped."""
    from training.data import BadRows

    check_rows, bad_rows = BadRows(strict=strict), BadRows(strict=strict)
    if is_time_ordered(_loader(path, data_format, check_rows)()):
        logger.info("%s is in event-time order: streaming it", path)
        return _loader(path, data_format, bad_rows)(), bad_rows
    logger.info("%s is not in event-time order: loading and sorting it in memory", path)
    events = sorted(_loader(path, data_format, bad_rows)(), key=lambda e: e.ts)  # stable: ties keep file order
    return iter(events), bad_rows


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    sent: int
    first_ts: int | None
    last_ts: int | None
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


async def publish(
    events: Iterable[Event],
    sink: RecordSink,
    *,
    speed: float | None = None,
    limit: int | None = None,
    stop: asyncio.Event | None = None,
) -> ReplaySummary:
    """Send ``events`` (key = user id) as fast as possible, or ``speed`` times faster than event time.

    Pacing is scheduled against the first event's time, so it does not drift with produce cost.
    The sink is flushed before returning: every counted event was acknowledged by the broker.
    """
    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive (or None for as fast as possible)")
    started = time.monotonic()
    sent, first_ts, last_ts = 0, None, None
    for event in events:
        if (limit is not None and sent >= limit) or (stop is not None and stop.is_set()):
            break
        if first_ts is None:
            first_ts = event.ts
        if speed is not None:
            lead = started + (event.ts - first_ts) / 1000 / speed - time.monotonic()
            if lead > _MIN_SLEEP_S:
                await asyncio.sleep(lead)
        await sink.write(Record(event.user_id.encode(), encode_event(event), event.ts))
        sent += 1
        last_ts = event.ts
        if sent % 1000 == 0:
            await asyncio.sleep(0)  # unpaced runs must still let the producer and signal handlers run
    await sink.flush()
    return ReplaySummary(sent, first_ts, last_ts, time.monotonic() - started)


async def replay_file(
    settings: Settings,
    path: Path,
    data_format: str,
    *,
    topic: str | None = None,
    speed: float | None = None,
    limit: int | None = None,
    strict: bool = False,
    stop: asyncio.Event | None = None,
) -> ReplaySummary:
    """Publish the file's events into ``topic`` (default: the settings' events topic)."""
    events, bad_rows = events_in_time_order(path, data_format, strict=strict)
    sink = KafkaSink(settings, topic)
    try:
        summary = await publish(events, sink, speed=speed, limit=limit, stop=stop)
    finally:
        await sink.close()
    if bad_rows.count:
        logger.warning("skipped %d malformed rows of %s (first: %s)", bad_rows.count, path, bad_rows.examples[:1])
    return summary


async def _replay_until_signal(
    settings: Settings,
    path: Path,
    data_format: str,
    *,
    topic: str | None,
    speed: float | None,
    limit: int | None,
    strict: bool,
) -> ReplaySummary:
    """:func:`replay_file`, ended early (after flushing what was sent) by Ctrl-C or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await replay_file(
            settings, path, data_format, topic=topic, speed=speed, limit=limit, strict=strict, stop=stop
        )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "data_format",
    type=click.Choice(REPLAY_FORMATS),
    default="jsonl",
    show_default=True,
    help="jsonl (contract events), taobao (UserBehavior.csv) or diginetica (train-item-views.csv).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Replay this many times faster than event time (default: as fast as possible).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Stop after this many events.")
@click.option("--topic", default=None, help="Topic instead of DEMANDSTREAM_TOPIC_EVENTS.")
@click.option("--strict", is_flag=True, help="Fail on the first malformed row instead of skipping it.")  # fmt: skip
def replay(
    path: Path, data_format: str, speed: float | None, limit: int | None, topic: str | None, strict: bool
) -> None:
    """Publish a dataset (JSON lines, Taobao, DIGINETICA) into the events topic in event-time order."""
    summary = asyncio.run(
        _replay_until_signal(get_settings(), path, data_format, topic=topic, speed=speed, limit=limit, strict=strict)
    )
    logger.info(
        "replayed %d events in %.1fs (%.0f/s), event time %s..%s",
        summary.sent, summary.elapsed_s, summary.rate, summary.first_ts, summary.last_ts,
    )  # fmt: skip
