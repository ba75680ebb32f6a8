"""What the worker's event loop goes through during a latency run: loop lag and GC pauses.

Both run in the benchmark's process, which is the worker's (the worker runs as a task on the
benchmark's event loop), so what they see is what a batch in flight waits out.
"""

from __future__ import annotations

import asyncio
import gc
import time
from types import TracebackType
from typing import Any

import numpy as np

_TICK_S = 0.001


def _summary(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {"count": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "total_ms": 0.0}
    arr = np.asarray(values_ms)
    return {
        "count": float(len(arr)),
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "max_ms": float(arr.max()),
        "total_ms": float(arr.sum()),
    }


class LoopLag:
    """A task that sleeps 1 ms again and again; how late each wake-up comes is the time the loop
    was busy with something else (a batch's decode/state/model/encode steps run without awaiting)."""

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(_TICK_S)
            self.lags_ms.append((time.perf_counter() - started - _TICK_S) * 1e3)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, float]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return _summary(self.lags_ms)


class GcPauses:
    """Durations of the collector's runs by generation (``gc.callbacks``), while entered."""

    def __init__(self) -> None:
        self.pauses_ms: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms[int(info["generation"])].append((time.perf_counter() - self._started) * 1e3)

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, dict[str, float]]:
        return {f"gen{generation}": _summary(values) for generation, values in self.pauses_ms.items()}
