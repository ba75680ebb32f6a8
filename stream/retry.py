"""The one retry policy of the engine: tenacity, configured once from the settings.

Redis batches, Kafka produce and start-up, and model loading all wait the same way: exponential
backoff from ``retry_backoff_start_s`` doubling up to ``retry_backoff_max_s``, plus up to 10%
jitter (so that workers that lost the same dependency do not retry in lockstep). What differs
per use is only *what* is retried and *until when*: callers pass the exception types and a stop
event or an attempt limit.

>>> policy = RetryPolicy(start_s=0.1, max_s=1.0)
>>> [round(policy.base_delay(n), 2) for n in range(1, 7)]
[0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from stream.config import Settings

_JITTER = 0.1  # fraction of the start delay added at random


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    start_s: float = 0.1
    max_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.retry_backoff_start_s, settings.retry_backoff_max_s)

    def base_delay(self, attempt: int) -> float:
        """The wait after failed try ``attempt`` (1-based), before jitter."""
        return min(self.start_s * 2.0 ** (attempt - 1), self.max_s)

    def wait(self) -> wait_base:
        return wait_exponential(multiplier=self.start_s, max=self.max_s) + wait_random(0, self.start_s * _JITTER)

    def retrying(
        self,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool],
        *,
        stop: asyncio.Event | None = None,
        attempts: int | None = None,
        before_sleep: Callable[[RetryCallState], Any] | None = None,
    ) -> AsyncRetrying:
        """An ``AsyncRetrying`` over ``retry_on`` until ``stop`` is set or ``attempts`` tries failed.

        ``retry_on``: exception types, or a predicate on the exception.

        The sleep between tries ends early when ``stop`` is set; the last error is then raised
        wrapped in ``tenacity.RetryError`` (``reraise`` when an attempt limit ran out).
        """
        stops: list[stop_base] = []
        if stop is not None:
            event = stop
            stops.append(lambda _state: event.is_set())  # type: ignore[arg-type]
        if attempts is not None:
            stops.append(stop_after_attempt(attempts))

        async def sleep(seconds: float) -> None:
            if stop is None:
                await asyncio.sleep(seconds)
                return
            with contextlib.suppress(TimeoutError):  # the stop event ends the wait early
                await asyncio.wait_for(stop.wait(), seconds)

        return AsyncRetrying(
            retry=_retry_condition(retry_on),
            wait=self.wait(),
            stop=stop_any(*stops) if stops else (lambda _state: False),  # type: ignore[arg-type]
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=stop is None,
        )


def _retry_condition(
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool],
) -> retry_if_exception:
    if isinstance(retry_on, (tuple, type)):
        return retry_if_exception_type(retry_on)
    return retry_if_exception(retry_on)
