"""``demandstream insights``: ``run`` (the stream job), ``report`` and ``serve``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

import click

log = logging.getLogger(__name__)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


@click.group()
def insights() -> None:
    """Product-development insights: stream job, report and dashboard."""


@insights.command()
@click.option("--group", default="demandstream-insights", show_default=True, help="Consumer group.")
def run(group: str) -> None:
    """Consume predictions and events into the Redis aggregates until SIGINT/SIGTERM."""
    from insights.consumer import InsightsJob
    from stream.config import get_settings

    async def main() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        await InsightsJob(get_settings(), group=group).run(stop)

    asyncio.run(main())


_PATH = click.Path(path_type=Path, exists=True, dir_okay=False)


@insights.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--reviews", type=_PATH, default=None, help="Review CSV (cat,label,review; label 0 = negative).")
@click.option("--category", "categories", multiple=True, help="Review categories (repeatable; default: all).")
@click.option(
    "--events", type=_PATH, default=None, help="JSON-lines shopper events (`demandstream simulate --output`)."
)
@click.option("--queries", type=_PATH, default=None, help="qid<TAB>query file: most searched terms.")
@click.option("--names", type=_PATH, default=None, help="Names JSON or the simulator's catalogue.json.")
@click.option("--bucket-s", default=3600, show_default=True, help="Time bucket of --events series, seconds.")
@click.option("--top", default=5, show_default=True, help="Pain points per category.")
@click.option("--live/--no-live", default=False, help="Demand, rising and unmet needs from the Redis aggregates.")
@click.option("--window", default=24, show_default=True, help="Buckets read from Redis.")
def report(
    out_dir: Path,
    reviews: Path | None,
    categories: tuple[str, ...],
    events: Path | None,
    queries: Path | None,
    names: Path | None,
    bucket_s: int,
    top: int,
    live: bool,
    window: int,
) -> None:
    """Write report.html (charts inline), findings.json and a CSV per table into OUT."""
    from insights import report as rep
    from insights.names import Names
    from stream.paths import check_writable_dir

    check_writable_dir(out_dir, "report folder (--out)")  # before the analysis, not after it

    loaded = Names.load(names) if names else Names()
    inputs = rep.ReportInputs(reviews, categories, events, queries, loaded, bucket_s, top)
    findings = rep.offline_findings(inputs)
    if live:
        from insights.store import InsightsStore
        from stream.config import get_settings

        findings = asyncio.run(rep.add_live(findings, InsightsStore(get_settings()), window, loaded))
    for path in rep.write_report(findings, out_dir):
        click.echo(str(path))


@insights.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8088, show_default=True)
@click.option("--refresh", "refresh_s", default=5.0, show_default=True, help="Page refresh, seconds.")
@click.option("--window", default=24, show_default=True, help="Buckets shown.")
@click.option(
    "--reviews",
    type=click.Path(path_type=Path),
    default=None,
    help="Also show pain points of this review CSV.",
)
@click.option("--category", "categories", multiple=True, help="Categories of --reviews.")
@click.option("--names", type=_PATH, default=None, help="Names JSON or the simulator's catalogue.json.")
def serve(
    host: str,
    port: int,
    refresh_s: float,
    window: int,
    reviews: Path | None,
    categories: tuple[str, ...],
    names: Path | None,
) -> None:
    """Serve the self-refreshing dashboard and its JSON API (/api/...)."""
    from insights.names import Names
    from insights.sources import corpus_from_csv
    from insights.store import InsightsStore
    from insights.web import create_app
    from insights.web import serve as serve_app
    from stream.config import get_settings

    offline = {}
    if reviews is not None:
        corpus = corpus_from_csv(reviews, categories or None)
        offline = {c: corpus.pain_points(c) for c in corpus.categories}
    loaded = Names.load(names) if names else Names()
    settings = get_settings()
    app = create_app(InsightsStore(settings), refresh_s, window, offline_pain_points=offline, names=loaded,
                     registry=settings.model_registry)  # fmt: skip

    async def main() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        await serve_app(app, host, port, stop)

    asyncio.run(main())
