"""The worker's HTTP endpoint: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``."""

from __future__ import annotations

import logging
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

logger = logging.getLogger(__name__)


class ServingModel(Protocol):
    @property
    def version(self) -> str: ...


class WorkerStatus(Protocol):
    """What the endpoint reads of a worker (``service.Worker`` has it; tests may pass anything that does)."""

    @property
    def model(self) -> ServingModel | None: ...

    @property
    def metrics_registry(self) -> CollectorRegistry: ...

    async def readiness(self) -> dict[str, bool]: ...


def make_app(worker: WorkerStatus) -> web.Application:
    """The aiohttp application of one worker (tests drive it with aiohttp's test client)."""

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(worker.metrics_registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        # Alive = the event loop answers; readiness covers the dependencies.
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        checks = await worker.readiness()
        ok = all(checks.values())
        model = worker.model.version if worker.model is not None else None
        return web.json_response({"ready": ok, "checks": checks, "model_version": model}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class WebServer:
    """Runs :func:`make_app` on ``host:port``; port 0 turns it off."""

    def __init__(self, worker: WorkerStatus, host: str, port: int) -> None:
        self._worker = worker
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if self._port == 0:
            return
        self._runner = web.AppRunner(make_app(self._worker), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        logger.info("metrics and health endpoint on %s:%d", self._host, self._port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
