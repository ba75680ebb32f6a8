"""The stream worker's shell: Kafka in, :class:`BatchProcessor`, Kafka out, offsets committed.

``await Worker(settings).run(stop_event)`` runs one member of the consumer group until
``stop_event`` is set; see docs/worker.md for the design and the measurements behind it. The
batch work itself lives in ``batch.py``, fetching, rewinds and the rebalance listener in
``offsets.py``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry
from tenacity import RetryCallState, RetryError

from stream.config import Settings
from stream.features.text import load_segmenter
from stream.kafka_options import kafka_options
from stream.registry import LoadedModel, ModelRegistry
from stream.retry import RetryPolicy
from stream.store import Fenced, OwnedStore, RedisBacking, StoreUnavailable
from stream.worker.batch import BatchProcessor, ProcessedBatch, SourceRecord, now_ms
from stream.worker.connectivity import publish_with_retries, stop_within, wait_for_kafka, watch_kafka
from stream.worker.metrics import WorkerMetrics
from stream.worker.offsets import (
    Batch,
    FinishBatchOnRevoke,
    fetch_batch,
    next_offsets,
    rewind_past_log_end,
    rewind_to_committed,
)
from stream.worker.publish import BatchPublisher
from stream.worker.reload import ModelWatcher
from stream.worker.web import WebServer

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer

logger = logging.getLogger(__name__)


class Worker:
    """One consumer-group member. Construct freely: nothing connects before :meth:`run`."""

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
        self.records_done = 0  # records whose outputs were acknowledged and offsets committed
        self.assigned: set[TopicPartition] = set()  # kept current by the rebalance listener
        self._batch_lock = asyncio.Lock()
        self._in_flight: asyncio.Task[bool] | None = None  # publish + commit of the last processed batch
        self._records_in_flight = 0
        self._kafka_ok = False
        self._kafka_outage = False  # set when the probe finds Kafka down, cleared by the rewind after it
        self._redis_ok = False
        self._loads_seen = 0  # store.loads already counted in the metric

    @property
    def model(self) -> LoadedModel | None:
        return self.watcher.model

    @property
    def metrics_registry(self) -> CollectorRegistry:
        return self.metrics.registry

    async def readiness(self) -> dict[str, bool]:
        """What ``/readyz`` reports: a model serves, Redis answers, Kafka works."""
        checks = {
            "model": self.watcher.model is not None,
            "redis": self._redis_ok and await self.store.ping(),
            "kafka": self._kafka_ok,
        }
        self.metrics.ready.set(1 if all(checks.values()) else 0)
        return checks

    async def run(self, stop: asyncio.Event, *, max_records: int | None = None) -> None:
        """Consume until ``stop`` is set (or ``max_records`` were processed), then shut down cleanly."""
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        settings = self.settings
        # Up first, so that /healthz answers and /readyz says what is missing while the worker
        # waits for its first model or for Kafka (a probe that cannot connect would restart it).
        web = WebServer(self, settings.http_host, settings.http_port)
        await web.start()
        if not await self.watcher.wait_for_model(stop, settings.model_poll_interval_s):
            await web.stop()
            return
        load_segmenter()  # jieba's dictionary, before the first text event needs it (and frozen below)
        # Everything allocated so far (imported modules, the model, jieba's dictionary) lives as
        # long as the worker: moved out of the collector's view, full collections stop scanning
        # it. Over the worker's ~78k startup objects one took ~47 ms here, a pause every event in
        # flight would wait out. Collected first, so that no garbage is frozen for good.
        gc.collect()
        gc.freeze()
        options = kafka_options(settings)
        if not await wait_for_kafka(options, stop, self.retry_policy):  # a missing broker is waited for, not fatal
            await web.stop()
            return
        producer = AIOKafkaProducer(**options, acks="all", linger_ms=2, max_batch_size=256 * 1024)
        consumer = AIOKafkaConsumer(
            **options,
            group_id=settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A fetch that finds nothing waits at most this long on the broker; brokers without
            # long-poll wake-ups (tansu) would otherwise add up to 500 ms (the default) per batch.
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(100, settings.kafka_session_timeout_ms // 3),
        )
        await producer.start()
        publisher = BatchPublisher(producer)
        watch_task: asyncio.Task[None] | None = None
        kafka_task: asyncio.Task[None] | None = None
        try:
            await consumer.start()
            listener = FinishBatchOnRevoke(
                self._batch_lock,
                self._wait_in_flight,
                self.assigned,
                on_revoked=self.processor.partitions_revoked,
                on_assigned=lambda assigned: self._on_assigned(consumer, assigned),
            )
            consumer.subscribe([settings.topic_events], listener=listener)
            self._kafka_ok = self._redis_ok = True
            watch_task = asyncio.create_task(self.watcher.watch(settings.model_poll_interval_s))
            kafka_task = asyncio.create_task(watch_kafka(options, self._set_kafka_ok))
            logger.info("worker started: group %s, topic %s", settings.consumer_group, settings.topic_events)
            while not stop.is_set():
                if self._kafka_ok and self._kafka_outage:
                    # Also after an outage that a batch spent entirely in its publish retries.
                    if not await self._drain():
                        break
                    self._kafka_outage = False
                    await rewind_to_committed(consumer)
                batch = await fetch_batch(consumer, settings.batch_max_size, settings.batch_linger_ms)
                if not batch:
                    if not await self._drain():
                        break
                    if max_records is not None and self.records_done >= max_records:
                        break
                    await rewind_past_log_end(consumer)
                    continue
                async with self._batch_lock:
                    started = await self._start_batch(consumer, publisher, batch, stop)
                if not started:
                    break
                if max_records is not None and self.records_done + self._records_in_flight >= max_records:
                    await self._drain()
                    break
        finally:
            await self._drain_on_exit()
            if watch_task is not None:
                watch_task.cancel()
            if kafka_task is not None:
                kafka_task.cancel()
            await web.stop()
            await stop_within("Kafka consumer", consumer.stop())
            await stop_within("Kafka producer", producer.stop())  # flushes whatever is still queued
            await self.store.close()
            self._kafka_ok = False
            logger.info("worker stopped after %d records", self.records_done)

    def _set_kafka_ok(self, ok: bool) -> None:
        self._kafka_ok = ok
        self._kafka_outage = self._kafka_outage or not ok

    async def _start_batch(
        self, consumer: AIOKafkaConsumer, publisher: BatchPublisher, batch: Batch, stop: asyncio.Event
    ) -> bool:
        """Process a batch, then hand its publish and commit to a task; False if abandoned.

        The publish (waiting for the broker's acknowledgements) and the commit of batch N run
        while batch N+1 is decoded, stepped and written to Redis. Batch N+1's records are only
        submitted once batch N's are acknowledged and its offsets committed, so predictions keep
        their order per partition, a retried publish cannot overtake a later one, and commits
        stay in offset order.
        """
        records = [record for records in batch.values() for record in records]
        self.metrics.events_in.inc(len(records))
        self.metrics.batch_size.observe(len(records))
        try:
            outgoing = await self._process_with_retries(records, stop)
        except RetryError:
            logger.warning("shutdown during a Redis outage: %d records left uncommitted", len(records))
            return False
        except Fenced as exc:
            self._fenced(consumer, batch, exc)
            return True
        self.metrics.held_users.set(len(self.store.held))
        self.metrics.user_loads.inc(self.store.loads - self._loads_seen)
        self._loads_seen = self.store.loads
        if not await self._drain():
            return False
        self._records_in_flight = len(records)
        self._in_flight = asyncio.create_task(
            self._publish_and_commit(consumer, publisher, outgoing, next_offsets(batch), len(records), stop)
        )
        return True

    def _fenced(self, consumer: AIOKafkaConsumer, batch: Batch, exc: Fenced) -> None:
        """Another worker owns some of the batch's partitions: commit and publish nothing of it.

        The store has dropped the lost partitions' users. Those partitions pause until the
        rebalance that takes them away (their new owner replays the records); the batch's other
        partitions are re-read from its first records (their events are replays now, which is
        harmless), since nothing of the batch was published.
        """
        self.metrics.fenced.inc()
        logger.warning("%s: pausing them until the rebalance, re-reading the rest of the batch", exc)
        assigned = consumer.assignment()
        for tp, records in batch.items():
            if tp not in assigned:  # already taken away by a rebalance: nothing to do
                continue
            if tp.partition in exc.partitions:
                consumer.pause(tp)
            elif records:
                consumer.seek(tp, records[0].offset)

    async def _on_assigned(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        paused = consumer.paused()
        consumer.resume(*(tp for tp in assigned if tp in paused))  # fenced out before, owned again
        await self.processor.partitions_assigned(assigned)

    async def _drain(self) -> bool:
        """Wait for the batch being published (if any); False if it was abandoned at shutdown."""
        task, self._in_flight = self._in_flight, None
        if task is None:
            return True
        try:
            return await task
        finally:
            self._records_in_flight = 0

    async def _wait_in_flight(self) -> None:
        """Wait until the batch being published is done, without taking its outcome from :meth:`_drain`."""
        task = self._in_flight
        if task is not None:
            await asyncio.wait([task])

    async def _drain_on_exit(self) -> None:
        try:
            await self._drain()
        except Exception:  # already shutting down: the records stay uncommitted and are replayed
            logger.exception("publishing the last batch failed; its records will be replayed")

    async def _publish_and_commit(
        self,
        consumer: AIOKafkaConsumer,
        publisher: BatchPublisher,
        outgoing: ProcessedBatch,
        offsets: dict[TopicPartition, int],
        records: int,
        stop: asyncio.Event,
    ) -> bool:
        """Publish a processed batch, then commit its offsets; False if abandoned (shutdown during an outage)."""
        from aiokafka.errors import CommitFailedError, KafkaError

        metrics = self.metrics
        started = time.perf_counter()
        # One record batch per partition, all acknowledged; retried through a broker outage.
        refused = await publish_with_retries(publisher, outgoing.records, stop, self.retry_policy)
        if refused is None:
            logger.warning("shutdown during a Kafka outage: %d records left uncommitted", records)
            return False
        for item in refused:  # refused for good: counted and logged, the batch goes on
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

        started = time.perf_counter()
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # The partitions moved on: their new owner replays these records, which is harmless.
            logger.warning("commit refused after a rebalance (records will be replayed): %s", exc)
        except KafkaError as exc:  # broker or coordinator gone: the uncommitted records are replayed later
            logger.warning("commit failed (records will be replayed): %r", exc)
        metrics.stage_seconds.labels("commit").observe(time.perf_counter() - started)
        for tp, next_offset in offsets.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                metrics.consumer_lag.labels(str(tp.partition)).set(max(highwater - next_offset, 0))
        self.records_done += records
        return True

    async def _process_with_retries(self, records: Sequence[SourceRecord], stop: asyncio.Event) -> ProcessedBatch:
        """Process and persist a batch, retried while the store is unreachable (every step is idempotent)."""

        def on_retry(state: RetryCallState) -> None:
            self._redis_ok = False
            self.metrics.redis_retries.inc()
            logger.warning("Redis unavailable, retrying the batch (attempt %d)", state.attempt_number)

        async for attempt in self.retry_policy.retrying(StoreUnavailable, stop=stop, before_sleep=on_retry):
            with attempt:
                outgoing = await self.processor.process(records)
                await self.processor.persist(outgoing)
                self._redis_ok = True
        return outgoing
