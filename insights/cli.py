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


@insights.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option(
    "--reviews",
    type=click.Path(path_type=Path),
    default=None,
    help="Review CSV (cat,label,review); default: shared data.",
)
@click.option("--no-reviews", is_flag=True, help="Skip the offline review analysis.")
@click.option("--category", "categories", multiple=True, help="Review categories (repeatable; default: all).")
@click.option(
    "--queries",
    type=click.Path(path_type=Path),
    default=None,
    help="qid<TAB>query file; default: shared data.",
)
@click.option("--no-queries", is_flag=True, help="Skip the offline unmet-needs simulation.")
@click.option("--sessions", default=5000, show_default=True, help="Simulated search sessions.")
@click.option("--seed", default=7, show_default=True, help="Seed of the session simulation.")
@click.option("--top", default=5, show_default=True, help="Pain points per category.")
@click.option("--live/--no-live", default=False, help="Add the stream aggregates from Redis.")
@click.option("--window", default=24, show_default=True, help="Buckets read from Redis.")
def report(
    out_dir: Path,
    reviews: Path | None,
    no_reviews: bool,
    categories: tuple[str, ...],
    queries: Path | None,
    no_queries: bool,
    sessions: int,
    seed: int,
    top: int,
    live: bool,
    window: int,
) -> None:
    """Write report.html (inline-SVG charts) and findings.json into OUT."""
    from insights import report as rep
    from stream.paths import check_writable_dir

    check_writable_dir(out_dir, "report folder (--out)")  # before the analysis, not after it

    findings = rep.offline_findings(
        None if no_reviews else (reviews or rep.DEFAULT_REVIEWS),
        categories,
        None if no_queries else (queries or rep.DEFAULT_QUERIES),
        sessions=sessions,
        seed=seed,
        top=top,
    )
    if live:
        from insights.store import InsightsStore
        from stream.config import get_settings

        findings = asyncio.run(rep.add_live(findings, InsightsStore(get_settings()), window))
    html, data = rep.write_report(findings, out_dir)
    click.echo(f"{html}\n{data}")


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
def serve(
    host: str,
    port: int,
    refresh_s: float,
    window: int,
    reviews: Path | None,
    categories: tuple[str, ...],
) -> None:
    """Serve the self-refreshing dashboard and its JSON API (/api/...)."""
    from insights.painpoints import corpus_from_csv
    from insights.store import InsightsStore
    from insights.web import create_app
    from insights.web import serve as serve_app
    from stream.config import get_settings

    offline = {}
    if reviews is not None:
        corpus = corpus_from_csv(reviews, categories or None)
        offline = {c: corpus.pain_points(c) for c in corpus.categories}
    app = create_app(InsightsStore(get_settings()), refresh_s, window, offline_pain_points=offline)

    async def main() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        await serve_app(app, host, port, stop)

    asyncio.run(main())
