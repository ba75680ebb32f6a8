"""``demandstream insights serve``: a small aiohttp dashboard over the live aggregates.

``/`` is a static page that polls ``/api/snapshot`` every ``refresh_s`` seconds and redraws;
``/api/demand``, ``/api/rising``, ``/api/unmet`` and ``/api/painpoints`` serve the parts and
``/charts/demand.svg`` the demand-over-time chart (matplotlib, see :mod:`insights.charts`),
``/api/online`` the "Model vs baseline, live" panel (the evaluator's numbers, :mod:`insights.online`).
Categories are shown by the names of the ``names`` file, ids as a secondary column.
Each request reads Redis (one pipelined window read), so the page shows the stream as it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from insights import charts
from insights.findings import Findings, live_findings
from insights.names import Names
from insights.online import online_panel
from insights.painpoints import PainPoint
from insights.store import InsightsStore

log = logging.getLogger(__name__)

STORE_KEY = web.AppKey("store", InsightsStore)
CONFIG_KEY = web.AppKey("config", dict[str, Any])
OFFLINE_KEY = web.AppKey("offline_pain_points", dict[str, list[PainPoint]])
NAMES_KEY = web.AppKey("names", Names)
REGISTRY_KEY = web.AppKey("registry", Path)


async def _findings(app: web.Application) -> Findings:
    store, config = app[STORE_KEY], app[CONFIG_KEY]
    now_ms = int(time.time() * 1000)
    latest = await store.latest_bucket()
    if latest is None:
        findings = Findings(generated_at=now_ms, bucket_s=store.bucket_s)
    else:
        window = await store.read_window(latest, config["window"])
        findings = live_findings(window, store.bucket_s, now_ms, recent=config["recent"], names=app[NAMES_KEY])
    for cat, points in app[OFFLINE_KEY].items():
        findings.pain_points.setdefault(cat, points)
        findings.category_names.setdefault(cat, app[NAMES_KEY].category(cat))
    return findings


def _json(payload: Any) -> web.Response:
    return web.Response(body=msgspec.json.encode(payload), content_type="application/json")


async def index(request: web.Request) -> web.Response:
    page = resources.files("insights").joinpath("templates/dashboard.html").read_text("utf-8")
    refresh_ms = int(request.app[CONFIG_KEY]["refresh_s"] * 1000)
    page = page.replace("__REFRESH_MS__", str(refresh_ms))
    return web.Response(text=page, content_type="text/html")


async def snapshot(request: web.Request) -> web.Response:
    return _json(await _findings(request.app))


async def part(request: web.Request) -> web.Response:
    findings = await _findings(request.app)
    name = request.match_info["part"]
    parts = {
        "demand": findings.demand,
        "rising": findings.rising,
        "unmet": findings.unmet,
        "painpoints": findings.pain_points,
    }
    if name not in parts:
        raise web.HTTPNotFound(text=f"no /api/{name}; try one of {sorted(parts)}")
    return _json(parts[name])


async def online(request: web.Request) -> web.Response:
    """Model vs baseline, live: read from the registry the evaluator writes (a small file)."""
    if REGISTRY_KEY not in request.app:
        raise web.HTTPNotFound(text="no model registry configured for the online metrics")
    return _json(await asyncio.to_thread(online_panel, request.app[REGISTRY_KEY]))


async def demand_chart(request: web.Request) -> web.Response:
    findings = await _findings(request.app)
    if not findings.demand or not findings.buckets:
        raise web.HTTPNotFound(text="no demand in the window yet")
    rising = frozenset(r.name for r in findings.rising)
    svg = await asyncio.to_thread(
        charts.series_chart,
        {d.name: d.series for d in findings.demand[:9]},
        findings.buckets,
        findings.bucket_s,
        "Demand per category over time",
        rising,
    )
    return web.Response(text=svg, content_type="image/svg+xml", headers={"Cache-Control": "no-store"})


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app(
    store: InsightsStore,
    refresh_s: float = 5.0,
    window: int = 24,
    recent: int = 1,
    offline_pain_points: dict[str, list[PainPoint]] | None = None,
    names: Names | None = None,
    registry: Path | None = None,
) -> web.Application:
    """The dashboard application (no server is started here)."""
    app = web.Application()
    app[STORE_KEY] = store
    app[CONFIG_KEY] = {"refresh_s": refresh_s, "window": window, "recent": recent}
    app[OFFLINE_KEY] = offline_pain_points or {}
    app[NAMES_KEY] = names or Names()
    if registry is not None:
        app[REGISTRY_KEY] = registry
    app.router.add_get("/", index)
    app.router.add_get("/healthz", health)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/charts/demand.svg", demand_chart)
    app.router.add_get("/api/online", online)
    app.router.add_get("/api/{part}", part)
    return app


async def serve(app: web.Application, host: str, port: int, stop: asyncio.Event) -> None:
    """Run ``app`` on ``host:port`` until ``stop`` is set."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("insights dashboard listening", extra={"host": host, "port": port})
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
