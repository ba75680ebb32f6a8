"""Hot model reload: watch the registry pointer, load + verify off the event loop, swap."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from stream.registry import LoadedModel, ModelRegistry, ModelVerificationError
from stream.registry.exceptions import RegistryError
from stream.registry.registry import how_to_get_a_model
from stream.worker.metrics import WorkerMetrics

logger = logging.getLogger(__name__)

NO_MODEL_LOG_EVERY_S = 30.0  # how often a worker without a model says so while it waits


class ModelWatcher:
    """Holds the serving model; :meth:`poll_once` switches to a newly promoted good version.

    The worker reads :attr:`model` once at the start of each batch, so a swap lands between
    batches. A version that fails verification is remembered and not retried (it is immutable
    on disk: retrying could only fail again), while the previous model keeps serving.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        metrics: WorkerMetrics,
        *,
        loader: Callable[[ModelRegistry, str], LoadedModel] = LoadedModel.load,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self._loader = loader
        self.model: LoadedModel | None = None
        self.refused: set[str] = set()

    async def poll_once(self) -> bool:
        """Check the pointer once; True when a new model now serves."""
        try:
            version = await asyncio.to_thread(self.registry.current_version)
        except (RegistryError, OSError) as exc:
            logger.warning("model registry unreadable: %s", exc)
            return False
        if version is None or version in self.refused:
            return False
        if self.model is not None and version == self.model.version:
            return False
        try:
            model = await asyncio.to_thread(self._loader, self.registry, version)
        except (ModelVerificationError, RegistryError, OSError, ValueError) as exc:
            self.refused.add(version)
            self.metrics.reloads.labels("refused").inc()
            serving = self.model.version if self.model else None
            logger.error("model %s refused, keeping %s: %s", version, serving, exc)
            return False
        previous, self.model = self.model, model
        self.metrics.reloads.labels("ok").inc()
        self.metrics.model_version.info({"version": model.version})
        logger.info("model %s now serving (was %s)", model.version, previous.version if previous else None)
        return True

    async def wait_for_model(self, stop: asyncio.Event, interval_s: float) -> bool:
        """Poll until a servable model is promoted (True) or ``stop`` is set (False).

        A worker deployed before its first model is normal (Kubernetes, a fresh checkout): it
        stays up and not ready, says every so often how to get a model, and starts consuming
        once one is promoted, without a restart.
        """
        last_said = -NO_MODEL_LOG_EVERY_S
        while not await self.poll_once():
            now = time.monotonic()
            if now - last_said >= NO_MODEL_LOG_EVERY_S:
                last_said = now
                logger.warning(
                    "no servable model in registry %s yet (not ready, waiting): %s",
                    self.registry.root,
                    how_to_get_a_model(self.registry.root),
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
            if stop.is_set():
                return False
        return True

    async def watch(self, interval_s: float) -> None:
        """Poll forever (until cancelled)."""
        while True:
            await asyncio.sleep(interval_s)
            await self.poll_once()
