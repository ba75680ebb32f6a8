"""The worker's batch processor inside a faust-streaming agent, for teams that already run faust.

:class:`FaustAdapter` drives the same :class:`~stream.worker.batch.BatchProcessor` as the
native worker (``stream/worker/service.py``): the same decoder, store, model watcher (hot
reload), metrics, publisher and retry policy; only the consumer is faust's. One agent takes
micro-batches with ``stream.take_events(batch_max_size, within=batch_linger)``, so every event
keeps its message's topic, partition and offset (dead letters carry them like the worker's).

Offsets: faust commits by itself whatever its streams acknowledged. ``take_events`` acknowledges
a batch's events when the agent asks for the next batch -- and also when the agent fails, as
its generator is closed. So each batch's messages get one extra reference (:class:`HeldBatch`)
that is released only once the batch's predictions and dead letters are acknowledged by the
broker: faust never commits past an unfinished batch, and a failed batch is never committed.
A failure crashes the app (``CrashingSupervisor``: faust would otherwise restart the agent and
carry on past the failed batch's offsets); the records are replayed by the next start.
See docs/faust.md for what this gives and what it does not.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import faust
from mode import CrashingSupervisor
from prometheus_client import CollectorRegistry
from tenacity import RetryCallState

from stream.config import Settings
from stream.exceptions import DemandstreamError
from stream.features.text import load_segmenter
from stream.kafka_options import kafka_options
from stream.registry import LoadedModel, ModelRegistry
from stream.retry import RetryPolicy
from stream.store import OwnedStore, RedisBacking, StoreUnavailable
from stream.worker.batch import BatchProcessor, ProcessedBatch, SourceRecord, now_ms
from stream.worker.connectivity import publish_with_retries, stop_within, wait_for_kafka
from stream.worker.metrics import WorkerMetrics
from stream.worker.publish import BatchPublisher
from stream.worker.reload import ModelWatcher
from stream.worker.web import WebServer

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

logger = logging.getLogger(__name__)

AGENT_NAME = "predict"


class BatchAbandoned(DemandstreamError):
    """A batch could not be finished (stopped during an outage, or it failed): it stays uncommitted."""


class HeldEvent(Protocol):
    """What :class:`HeldBatch` uses of a faust event."""

    @property
    def message(self) -> Any:  # faust.types.tuples.Message: incref(), and a SourceRecord's fields
        ...

    def ack(self) -> bool: ...


class HeldBatch:
    """One reference more on each event's message, from taking the batch until its outputs are acked.

    faust commits an offset once every reference to its message is released. ``take_events``
    releases its own when the agent moves on or fails; the one held here is released by
    :meth:`release`, called only after the batch's outputs were acknowledged.
    """

    def __init__(self, events: Sequence[HeldEvent]) -> None:
        self.events = list(events)
        for event in self.events:
            event.message.incref()
        self.released = False

    def records(self) -> list[SourceRecord]:
        """The batch's records as the processor reads them (faust's messages have topic/partition/offset/key/value)."""
        return [event.message for event in self.events]

    def release(self) -> None:
        """The outputs are acknowledged: let faust commit these offsets."""
        if not self.released:
            self.released = True
            for event in self.events:
                event.ack()


def source_partitions(tps: Iterable[Any], topic: str) -> set[tuple[str, int]]:
    """The ``(topic, partition)`` pairs of ``topic`` among faust's TPs (it also assigns its own topics)."""
    return {(tp.topic, tp.partition) for tp in tps if tp.topic == topic}


def take_within_s(settings: Settings) -> float:
    """``take_events``'s ``within`` for the settings' linger: never 0, which faust reads as "no timeout"
    (a batch would then wait until it is full, however long that takes)."""
    return max(settings.batch_linger_ms, 1) / 1000


def broker_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """faust's form of the TLS/SASL settings (the same context and secrets as :func:`kafka_options`)."""
    options = kafka_options(settings)
    context = options.get("ssl_context")
    if settings.kafka_sasl_mechanism is not None:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=options.get("sasl_plain_password"),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def app_config(settings: Settings, datadir: Path) -> dict[str, Any]:
    """The faust app's settings, from the project's one settings object."""
    return {
        "broker": [f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
        "broker_credentials": broker_credentials(settings),
        "broker_session_timeout": settings.kafka_session_timeout_ms / 1000,
        "broker_heartbeat_interval": max(0.1, settings.kafka_session_timeout_ms / 3000),
        "broker_max_poll_records": settings.batch_max_size,
        "consumer_auto_offset_reset": "earliest",
        "key_serializer": "raw",
        "value_serializer": "raw",
        "store": "memory://",  # no tables: the state lives in Redis, as the worker's
        "datadir": str(datadir),
        "web_enabled": False,  # the worker's own /metrics, /healthz, /readyz serve instead
        "topic_disable_leader": True,  # no leader election is used; brokers without auto-create need no topic
        "topic_allow_declare": False,  # the input topic belongs to the producers
        "agent_supervisor": CrashingSupervisor,
    }


class FaustAdapter:
    """A faust app whose one agent runs the worker's batch processor; see the module docstring.

    Construct freely: nothing connects before :meth:`run`.
    """

    def __init__(self, settings: Settings, *, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self.retry_policy = RetryPolicy.from_settings(settings)
        self.watcher = ModelWatcher(
            ModelRegistry(settings.model_registry),
            self.metrics,
            policy=self.retry_policy,
            load_attempts=settings.model_load_attempts,
            redis_window=settings.window_size,
        )
        self.store = OwnedStore.from_settings(settings, RedisBacking(settings))
        self.processor = BatchProcessor(
            settings, store=self.store, model=lambda: self.watcher.model, metrics=self.metrics
        )
        self.records_done = 0  # records whose outputs were acknowledged (their offsets are faust's to commit)
        self.assigned: set[tuple[str, int]] = set()
        self.app: faust.App | None = None
        self.failure: BaseException | None = None
        self._failed = asyncio.Event()
        self._stop = asyncio.Event()
        self._publisher: BatchPublisher | None = None
        self._redis_ok = False

    @property
    def model(self) -> LoadedModel | None:
        return self.watcher.model

    @property
    def metrics_registry(self) -> CollectorRegistry:
        return self.metrics.registry

    async def readiness(self) -> dict[str, bool]:
        """What ``/readyz`` reports: a model serves, Redis answers, the faust app runs."""
        app = self.app
        checks = {
            "model": self.watcher.model is not None,
            "redis": self._redis_ok and await self.store.ping(),
            "kafka": app is not None and app.started and not app.crashed and not self._failed.is_set(),
        }
        self.metrics.ready.set(1 if all(checks.values()) else 0)
        return checks

    def make_app(self, datadir: Path) -> faust.App:
        """The faust app with its agent (``take_events`` batches of the events topic)."""
        settings = self.settings
        app = faust.App(settings.consumer_group, **app_config(settings, datadir))
        source = app.topic(settings.topic_events, key_serializer="raw", value_serializer="raw")
        linger_s = take_within_s(settings)

        async def predict(stream: Any) -> None:  # a faust.Stream of raw values
            async for events in stream.take_events(settings.batch_max_size, within=linger_s):
                await self.handle(events)

        app.agent(source, name=AGENT_NAME, supervisor_strategy=CrashingSupervisor)(predict)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_partitions_revoked.connect(self._on_revoked)
        return app

    # faust's signal receivers: (sender, the set of TPs, signal=...).
    async def _on_assigned(self, _app: Any, /, *args: Any, signal: Any, **_kwargs: Any) -> None:
        pairs = source_partitions(args[0], self.settings.topic_events)
        self.assigned = pairs
        await self.processor.partitions_assigned(pairs)

    async def _on_revoked(self, _app: Any, /, *args: Any, signal: Any, **_kwargs: Any) -> None:
        # faust sends this after waiting for every taken event's final ack: the held batch is done.
        pairs = source_partitions(args[0], self.settings.topic_events)
        self.assigned -= pairs
        await self.processor.partitions_revoked(pairs)

    async def handle(self, events: Sequence[HeldEvent]) -> None:
        """One batch: process, persist, publish, then release its offsets; any failure crashes the app."""
        held = HeldBatch(events)
        try:
            records = held.records()
            self.metrics.events_in.inc(len(records))
            self.metrics.batch_size.observe(len(records))
            outgoing = await self._process_with_retries(records)
            await self._publish(outgoing, len(records))
        except BaseException as exc:
            # Never released: faust cannot commit these offsets; they are replayed after the restart.
            if self._stop.is_set() or isinstance(exc, asyncio.CancelledError):
                # Asked to stop (e.g. during an outage the batch was retrying through): not a failure.
                logger.warning("stopping: a batch of %d records left uncommitted (replayed later)", len(held.events))
            else:
                self.failure = exc
                self._failed.set()
                logger.error("batch of %d records failed, left uncommitted; stopping: %r", len(held.events), exc)
            raise
        held.release()
        self.records_done += len(held.events)

    async def _process_with_retries(self, records: Sequence[SourceRecord]) -> ProcessedBatch:
        """Process and persist, retried while the store is unreachable (as the native worker does)."""

        def on_retry(state: RetryCallState) -> None:
            self._redis_ok = False
            self.metrics.redis_retries.inc()
            logger.warning("Redis unavailable, retrying the batch (attempt %d)", state.attempt_number)

        async for attempt in self.retry_policy.retrying(StoreUnavailable, stop=self._stop, before_sleep=on_retry):
            with attempt:
                outgoing = await self.processor.process(records)
                await self.processor.persist(outgoing)
                self._redis_ok = True
        return outgoing

    async def _publish(self, outgoing: ProcessedBatch, records: int) -> None:
        """Publish with the worker's publisher and retries; count like the worker does."""
        if self._publisher is None:
            raise BatchAbandoned("no producer: the adapter is not running")
        metrics, started = self.metrics, time.perf_counter()
        refused = await publish_with_retries(self._publisher, outgoing.records, self._stop, self.retry_policy)
        if refused is None:
            raise BatchAbandoned(f"stopped during a Kafka outage: {records} records left uncommitted")
        for item in refused:  # refused for good: counted and logged, the batch goes on (as in the worker)
            error = type(item.error).__name__
            metrics.records_refused.labels(item.topic, error).inc()
            logger.error("broker refused a %d-byte record for %s for good (%s): dropped", item.size, item.topic, error)
        published = now_ms()
        metrics.stage_seconds.labels("produce").observe(time.perf_counter() - started)
        lost = sum(1 for item in refused if item.topic == self.settings.topic_predictions)
        metrics.predictions_out.inc(len(outgoing.predicted_ts) - lost)
        for code in outgoing.dlq_codes:
            metrics.dlq.labels(code).inc()
        metrics.observe_latency(published, outgoing.predicted_ts, int(self.settings.latency_horizon_s * 1000))

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; raises :class:`BatchAbandoned` (the cause chained) if a batch failed."""
        from aiokafka import AIOKafkaProducer

        settings = self.settings
        web = WebServer(self, settings.http_host, settings.http_port)
        await web.start()
        producer: AIOKafkaProducer | None = None
        watch_task: asyncio.Task[None] | None = None
        try:
            if not await self.watcher.wait_for_model(stop, settings.model_poll_interval_s):
                return
            load_segmenter()
            options = kafka_options(settings)
            if not await wait_for_kafka(options, stop, self.retry_policy):
                return
            producer = AIOKafkaProducer(**options, acks="all", linger_ms=2, max_batch_size=256 * 1024)
            await producer.start()
            self._publisher = BatchPublisher(producer)
            self._redis_ok = True
            watch_task = asyncio.create_task(self.watcher.watch(settings.model_poll_interval_s))
            with tempfile.TemporaryDirectory(prefix="demandstream-faust-") as datadir:
                await self._run_app(self.make_app(Path(datadir)), stop)
        finally:
            self._stop.set()
            if watch_task is not None:
                watch_task.cancel()
            await web.stop()
            if producer is not None:
                await stop_within("Kafka producer", producer.stop())
            await self.store.close()
            logger.info("faust adapter stopped after %d records", self.records_done)
        if self.failure is not None:
            raise BatchAbandoned(f"a batch failed and was left uncommitted: {self.failure!r}") from self.failure

    async def _run_app(self, app: faust.App, stop: asyncio.Event) -> None:
        self.app = app
        await app.start()
        logger.info("faust adapter started: app/group %s, topic %s", app.conf.id, self.settings.topic_events)
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._failed.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            self._stop.set()  # ends the retries of a batch still in progress
            await stop_within("faust app", app.stop())
