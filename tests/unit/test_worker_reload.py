"""Model loading: a bad version is refused for good, a failed read is retried and counted.

The loader is a stand-in (a pure unit of the watcher's policy); loading real models is covered
by tests/unit/test_registry.py and tests/integration/test_faults_model.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from stream.registry import ModelVerificationError
from stream.registry.exceptions import RegistryError
from stream.retry import RetryPolicy
from stream.worker.metrics import WorkerMetrics
from stream.worker.reload import ModelWatcher

FAST = RetryPolicy(start_s=0.001, max_s=0.002)


def _model(version: str = "v1", window: int = 12) -> Any:
    return SimpleNamespace(version=version, manifest=SimpleNamespace(feature_spec=SimpleNamespace(window=window)))


class Loader:
    """Fails with ``errors`` in turn, then returns ``model``."""

    def __init__(self, errors: list[Exception], model: Any) -> None:
        self.errors, self.model, self.calls = list(errors), model, 0

    def __call__(self, registry: Any, version: str) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.model


def _watcher(loader: Loader, *, attempts: int = 4, redis_window: int | None = 100) -> ModelWatcher:
    registry: Any = SimpleNamespace(current_version=lambda: "v1")
    return ModelWatcher(
        registry, WorkerMetrics(), loader=loader, policy=FAST, load_attempts=attempts, redis_window=redis_window
    )


def _count(watcher: ModelWatcher, outcome: str) -> float:
    labels = {"outcome": outcome}
    return watcher.metrics.registry.get_sample_value("demandstream_worker_model_reloads_total", labels) or 0.0


async def test_io_errors_are_retried_and_counted() -> None:
    loader = Loader([OSError("stale NFS handle"), RegistryError("no such model version 'v1'")], _model())
    watcher = _watcher(loader)
    assert await watcher.poll_once()
    assert watcher.model is loader.model and loader.calls == 3
    assert _count(watcher, "io_error") == 2 and _count(watcher, "ok") == 1


async def test_io_errors_past_the_attempts_wait_for_the_next_poll_not_a_refusal() -> None:
    loader = Loader([OSError("EIO")] * 3, _model())
    watcher = _watcher(loader, attempts=2)
    assert not await watcher.poll_once()
    assert watcher.refused == set() and _count(watcher, "io_error") == 2
    assert await watcher.poll_once()  # the next poll: one more EIO, then it reads
    assert watcher.model is loader.model


@pytest.mark.parametrize("error", [ModelVerificationError("parity"), ValueError("bad manifest")])
async def test_verification_failures_are_refused_for_good(error: Exception) -> None:
    loader = Loader([error], _model())
    watcher = _watcher(loader)
    assert not await watcher.poll_once()
    assert not await watcher.poll_once()
    assert watcher.refused == {"v1"} and loader.calls == 1 and _count(watcher, "refused") == 1


async def test_a_pointer_window_over_the_redis_window_is_refused_naming_the_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watcher = _watcher(Loader([], _model(window=50)), redis_window=20)
    assert not await watcher.poll_once()
    assert watcher.refused == {"v1"} and watcher.model is None
    assert "DEMANDSTREAM_WINDOW_SIZE to at least 50" in caplog.text
    assert await _watcher(Loader([], _model(window=20)), redis_window=20).poll_once()
