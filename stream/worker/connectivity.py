"""Kafka outages seen from the worker: wait for the broker, watch it, retry a batch's publish.

aiokafka reconnects by itself once started, but it does not start without a broker, it says
nothing the worker could turn into readiness, and a send that outlives ``request_timeout_ms``
fails its batch. These helpers close those gaps with logged retries of the one retry policy
(:mod:`stream.retry`); every wait ends early when the worker is asked to stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tenacity import RetryCallState, RetryError

from stream.retry import RetryPolicy
from stream.worker.publish import BatchPublisher, Refused

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
STOP_TIMEOUT_S = 10.0  # most time a Kafka client's shutdown may take (it hangs on a dead broker)


async def probe_kafka(options: dict[str, Any]) -> Exception | None:
    """Bootstrap a throw-away client (metadata request); None when the cluster answered."""
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(**options, request_timeout_ms=int(PROBE_TIMEOUT_S * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), PROBE_TIMEOUT_S * 2)
        return None
    except Exception as exc:  # any client error means "not reachable"
        return exc
    finally:
        await client.close()


class _Unreachable(Exception):
    """The probe found no broker (retried by the policy)."""


async def wait_for_kafka(options: dict[str, Any], stop: asyncio.Event, policy: RetryPolicy) -> bool:
    """Return True once the brokers answer (logging each failed try), False if stopped first."""
    bootstrap = options.get("bootstrap_servers")

    def log(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.warning("Kafka unreachable at %s (attempt %d, retrying): %s", bootstrap, state.attempt_number, error)

    if stop.is_set():
        return False
    try:
        async for attempt in policy.retrying(_Unreachable, stop=stop, before_sleep=log):
            with attempt:
                error = await probe_kafka(options)
                if error is not None:
                    raise _Unreachable(error)
                logger.info("connected to Kafka at %s (attempt %d)", bootstrap, attempt.retry_state.attempt_number)
    except RetryError:
        return False
    return True


async def watch_kafka(options: dict[str, Any], set_ok: Callable[[bool], None], interval_s: float = 1.0) -> None:
    """Probe the brokers forever (until cancelled); report changes through ``set_ok`` and the log."""
    bootstrap, ok = options.get("bootstrap_servers"), True
    while True:
        await asyncio.sleep(interval_s)
        error = await probe_kafka(options)
        if (error is None) != ok:
            ok = error is None
            if ok:
                logger.info("Kafka at %s reachable again", bootstrap)
            else:
                logger.warning("Kafka at %s unreachable (the clients keep retrying): %s", bootstrap, error)
        set_ok(ok)


async def publish_with_retries(
    publisher: BatchPublisher,
    records: Sequence[tuple[str, bytes | None, bytes]],
    stop: asyncio.Event,
    policy: RetryPolicy,
) -> list[Refused] | None:
    """Publish until every record is acknowledged or refused for good; None if the worker stops first.

    Retriable errors are retried with a bounded backoff; records the broker refuses for good
    (:data:`~stream.worker.publish.PERMANENT_ERRORS`) are returned, not retried: retrying them
    would stall the stream. A failed attempt may have delivered part of the records:
    downstream sees duplicates (at-least-once), never a gap, since offsets are only committed
    after the whole list is done.
    """
    from aiokafka.errors import KafkaError

    def log(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        attempt = state.attempt_number
        logger.warning("publishing %d records failed (attempt %d, retrying): %r", len(records), attempt, error)

    try:
        async for attempt in policy.retrying(KafkaError, stop=stop, before_sleep=log):
            with attempt:
                return await publisher.publish(records)
    except RetryError:
        return None
    return None  # not reached: the loop returns or raises


async def stop_within(what: str, closing: Awaitable[None], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Await a client's shutdown, giving up (with a warning) after ``timeout_s``."""
    try:
        await asyncio.wait_for(closing, timeout_s)
    except TimeoutError:
        logger.warning("%s did not stop within %.0fs (broker unreachable?); abandoned", what, timeout_s)
