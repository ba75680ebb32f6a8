"""Hot model reload: watch the registry pointer, load + verify off the event loop, swap."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from tenacity import RetryCallState

from stream.registry import LoadedModel, ModelRegistry, ModelVerificationError
from stream.registry.exceptions import RegistryError
from stream.registry.registry import how_to_get_a_model
from stream.retry import RetryPolicy
from stream.worker.metrics import WorkerMetrics

logger = logging.getLogger(__name__)

NO_MODEL_LOG_EVERY_S = 30.0  # how often a worker without a model says so while it waits


class ModelWatcher:
    """Holds the serving model; :meth:`poll_once` switches to a newly promoted good version.

    The worker reads :attr:`model` once at the start of each batch, so a swap lands between
    batches. Failures are of two kinds (docs/reliability.md):

    - the version itself is bad (hash, interface or parity verification, or a pointer window
      larger than the worker's Redis window): it is immutable on disk, so it is refused for
      good (:attr:`refused`) while the previous model keeps serving;
    - reading it failed (``OSError``, or a version the registry does not show yet: a registry
      on NFS, a half-synced volume): retried with the retry policy's backoff, counted
      (``model_reloads{outcome="io_error"}``), and tried again at the next poll if it still fails.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        metrics: WorkerMetrics,
        *,
        loader: Callable[[ModelRegistry, str], LoadedModel] = LoadedModel.load,
        policy: RetryPolicy | None = None,
        load_attempts: int = 4,
        redis_window: int | None = None,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self._loader = loader
        self._policy = policy or RetryPolicy()
        self._load_attempts = load_attempts
        self._redis_window = redis_window
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
        serving = self.model.version if self.model else None
        try:
            model = await self._load(version)
            self._check_window(model)
        except (ModelVerificationError, ValueError) as exc:
            self.refused.add(version)
            self.metrics.reloads.labels("refused").inc()
            logger.error("model %s refused, keeping %s (for good: it cannot change): %s", version, serving, exc)
            return False
        except (OSError, RegistryError) as exc:  # transient (verification errors were caught above)
            self.metrics.reloads.labels("io_error").inc()
            logger.warning("model %s could not be read, keeping %s (next poll tries again): %s", version, serving, exc)
            return False
        previous, self.model = self.model, model
        self.metrics.reloads.labels("ok").inc()
        self.metrics.model_version.info({"version": model.version})
        logger.info("model %s now serving (was %s)", model.version, previous.version if previous else None)
        return True

    async def _load(self, version: str) -> LoadedModel:
        """Load ``version``, retrying I/O errors with the retry policy (each one counted)."""

        def counted(state: RetryCallState) -> None:
            self.metrics.reloads.labels("io_error").inc()
            error = state.outcome.exception() if state.outcome else None
            logger.warning("reading model %s failed (attempt %d, retrying): %s", version, state.attempt_number, error)

        async for attempt in self._policy.retrying(_is_transient, attempts=self._load_attempts, before_sleep=counted):
            with attempt:
                return await asyncio.to_thread(self._loader, self.registry, version)
        raise AssertionError("unreachable: the retry loop returns or raises")

    def _check_window(self, model: LoadedModel) -> None:
        """A rebuild reads at most the Redis window; a model that points further back needs more."""
        needed = model.manifest.feature_spec.window
        if self._redis_window is not None and needed > self._redis_window:
            raise ModelVerificationError(
                f"its pointer window is {needed} events but the worker keeps {self._redis_window} per user: "
                f"set DEMANDSTREAM_WINDOW_SIZE to at least {needed}"
            )

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


def _is_transient(exc: BaseException) -> bool:
    """An error that reading the version again may cure (a verification error is a RegistryError too)."""
    return isinstance(exc, OSError) or (isinstance(exc, RegistryError) and not isinstance(exc, ModelVerificationError))
