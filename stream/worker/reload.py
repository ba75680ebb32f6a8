"""Hot model reload: watch the registry pointer, load + verify off the event loop, swap."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from stream.registry import LoadedModel, ModelRegistry, ModelVerificationError
from stream.registry.exceptions import RegistryError
from stream.worker.metrics import WorkerMetrics

logger = logging.getLogger(__name__)


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

    async def watch(self, interval_s: float) -> None:
        """Poll forever (until cancelled)."""
        while True:
            await asyncio.sleep(interval_s)
            await self.poll_once()
