"""``demandstream demo``: the whole pipeline on this machine, from nothing running to live predictions.

Starts a tansu broker and a private redis-server (children that die with this process), makes sure
a demo model exists (trains one on first use), runs a worker in this process, feeds simulated
shoppers (and a few malformed payloads, to show the dead-letter topic) and shows what comes out.
``--duration`` or Ctrl-C stops everything, in order: feed, worker, consumer, broker, Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from stream.config import Settings, get_settings
from tools.demo.model import ensure_demo_model
from tools.demo.state import DemoState
from tools.demo.view import plain_lines, render_live, summary_lines

logger = logging.getLogger(__name__)

_DEMO_PARTITIONS = 3
_DEMO_SESSION_TIMEOUT_MS = 6000  # tansu makes group joins wait half of it (DESIGN.md)
_JOIN_TIMEOUT_S = 60.0
_DRAIN_TIMEOUT_S = 5.0
_LIVE_REFRESH_S = 0.25


@dataclass(frozen=True, slots=True)
class DemoOptions:
    workdir: Path
    duration_s: float | None
    rate: float | None
    users: int
    seed: int
    malformed: float
    backfill_s: float
    http_port: int
    live: bool
    interval_s: float


def demo_settings(bootstrap: str, redis_url: str, registry: Path, http_port: int) -> Settings:
    """The environment's settings, pointed at the demo's own broker, Redis and registry."""
    overrides: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "kafka_security_protocol": "PLAINTEXT",
        "kafka_sasl_mechanism": None,
        "redis_url": redis_url,
        "redis_password": None,
        "redis_cluster": False,
        "model_registry": registry,
        "http_port": http_port,
        "consumer_group": "demandstream-demo",
        "kafka_session_timeout_ms": _DEMO_SESSION_TIMEOUT_MS,
        "topic_partitions": _DEMO_PARTITIONS,
        "topic_replication": 1,
    }
    return Settings.model_validate({**get_settings().model_dump(), **overrides})


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _wait_for_partitions(worker: Any, worker_task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Until the worker owns partitions, so the first events' latency does not include the group join."""
    deadline = asyncio.get_running_loop().time() + _JOIN_TIMEOUT_S
    while not worker.assigned and not stop.is_set():
        if worker_task.done():
            worker_task.result()  # raises the worker's error
            raise RuntimeError("the worker stopped before it joined the group")
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"the worker got no partitions within {_JOIN_TIMEOUT_S:.0f}s")
        await asyncio.sleep(0.05)


async def _show(state: DemoState, options: DemoOptions, stop: asyncio.Event, watched: list[asyncio.Task[None]]) -> None:
    """Refresh the view until ``stop`` (or until a watched task fails)."""
    from tools.simulate import default_catalogue

    names = default_catalogue().name
    period = _LIVE_REFRESH_S if options.live else options.interval_s
    live_view: Any = None
    if options.live:
        from rich.live import Live

        live_view = Live(render_live(state, names), auto_refresh=False, screen=False)
        live_view.start()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)
            if any(task.done() for task in watched):
                stop.set()  # a failed worker or consumer ends the demo; its error is raised below
            if live_view is not None:
                live_view.update(render_live(state, names), refresh=True)
            else:
                click.echo("\n".join(plain_lines(state, names)))
    finally:
        if live_view is not None:
            live_view.stop()


async def _drain(state: DemoState) -> None:
    """Give in-flight events a moment to come back as predictions before the worker stops."""
    deadline = asyncio.get_running_loop().time() + _DRAIN_TIMEOUT_S
    while state.awaiting_prediction and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)


async def run_demo(options: DemoOptions) -> DemoState:
    """Run the demo until ``options.duration_s`` or a signal; returns what it saw."""
    from stream.worker import Worker
    from tools.demo.feed import consume_outputs, feed
    from tools.devinfra.broker import TansuBroker, create_topics
    from tools.devinfra.redis_server import RedisServer

    infra_dir = options.workdir / "infra"
    broker = TansuBroker(workdir=infra_dir)
    redis_server = RedisServer(workdir=infra_dir)
    stop, outputs_stop, worker_stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    with _stop_on_signals(stop):
        try:
            await broker.start()
            redis_server.start()
            assert redis_server.process is not None
            logger.info(
                "demo infrastructure: tansu pid %s at %s, redis-server pid %s at %s",
                broker.process.pid, broker.bootstrap, redis_server.process.pid, redis_server.url,
            )  # fmt: skip
            settings = demo_settings(broker.bootstrap, redis_server.url, options.workdir / "models", options.http_port)
            topics = (settings.topic_events, settings.topic_predictions, settings.topic_dlq)
            await create_topics(broker.bootstrap, dict.fromkeys(topics, _DEMO_PARTITIONS))
            worker = Worker(settings)
            worker_task = asyncio.create_task(worker.run(worker_stop), name="worker")
            tasks.append(worker_task)
            await _wait_for_partitions(worker, worker_task, stop)
            state = DemoState()
            state.model_version = worker.model.version if worker.model is not None else None
            consumer_task = asyncio.create_task(consume_outputs(settings, state, outputs_stop), name="consumer")
            feed_task = asyncio.create_task(
                feed(settings, state, stop, seed=options.seed, users=options.users, rate=options.rate,
                     malformed=options.malformed, backfill_s=options.backfill_s),
                name="feed",
            )  # fmt: skip
            tasks += [consumer_task, feed_task]
            timer = None
            if options.duration_s is not None:
                timer = asyncio.get_running_loop().call_later(options.duration_s, stop.set)
            try:
                await _show(state, options, stop, [worker_task, consumer_task])
            finally:
                if timer is not None:
                    timer.cancel()
            await feed_task  # it saw `stop`: flushes what it sent, then returns
            if not worker_task.done():
                await _drain(state)
            worker_stop.set()
            outputs_stop.set()
            for task in (worker_task, consumer_task):
                await task  # re-raises a failure of either
            return state
        finally:
            stop.set()
            worker_stop.set()
            outputs_stop.set()
            for task in tasks:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            broker.stop()
            redis_server.stop()
            logger.info("demo infrastructure stopped (tansu and redis-server)")


@contextlib.contextmanager
def _logs_above_live_view(live: bool) -> Iterator[None]:
    """While the live view runs, log lines go through rich so they print above it, not through it."""
    if not live:
        yield
        return
    from rich.logging import RichHandler

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [RichHandler(show_path=False, rich_tracebacks=False)]
    try:
        yield
    finally:
        root.handlers[:] = saved


@click.command()
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds (default: run until Ctrl-C).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=100.0,
    show_default=True,
    help="Events per second; 0 = as fast as possible.",
)
@click.option("--users", type=click.IntRange(min=1), default=200, show_default=True, help="Simulated shoppers.")
@click.option("--seed", type=int, default=42, show_default=True, help="Simulator seed.")
@click.option(
    "--malformed",
    type=click.FloatRange(0, 1),
    default=0.02,
    show_default=True,
    help="Fraction of payloads broken on purpose (they go to the dead-letter topic).",
)
@click.option(
    "--backfill-hours",
    type=click.FloatRange(min=0, min_open=True),
    default=168.0,
    show_default=True,
    help="Simulated time starts this long ago and the feed ends when it reaches now.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var/demo"),
    show_default=True,
    help="Demo registry (models/), training data, report and server logs.",
)
@click.option("--retrain", is_flag=True, help="Train a new demo model even if one exists.")
@click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Worker metrics/health port (0 = off).",
)
@click.option("--plain", is_flag=True, help="Plain periodic lines even on a terminal.")
@click.option("--interval", "interval_s", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between plain lines.")  # fmt: skip
def demo(
    duration_s: float | None,
    rate: float,
    users: int,
    seed: int,
    malformed: float,
    backfill_hours: float,
    workdir: Path,
    retrain: bool,
    http_port: int,
    plain: bool,
    interval_s: float,
) -> None:
    """Live demo: local broker + Redis, a demo model, a worker, simulated shoppers, live predictions."""
    # aiokafka narrates every group join at INFO: noise for someone watching the demo.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    ensure_demo_model(workdir, retrain=retrain)
    options = DemoOptions(
        workdir=workdir, duration_s=duration_s, rate=rate or None, users=users, seed=seed, malformed=malformed,
        backfill_s=backfill_hours * 3600, http_port=http_port, live=sys.stdout.isatty() and not plain,
        interval_s=interval_s,
    )  # fmt: skip
    with _logs_above_live_view(options.live):
        state = asyncio.run(run_demo(options))
    click.echo("\n".join(summary_lines(state)))
