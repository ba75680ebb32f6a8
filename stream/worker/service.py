"""The stream worker: aiokafka micro-batches -> Redis window/state -> ONNX -> predictions.

``await Worker(settings).run(stop_event)`` runs one member of the consumer group until
``stop_event`` is set; see docs/worker.md for the design and the measurements behind it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
from aiokafka import ConsumerRebalanceListener, TopicPartition
from tenacity import AsyncRetrying, RetryCallState, RetryError, retry_if_exception_type, wait_exponential_jitter

from stream.config import Settings
from stream.contracts import CategoryScore, DeadLetter, Event, EventDecoder, InvalidEvent, Prediction
from stream.registry import LoadedModel, ModelRegistry
from stream.simulate.output import kafka_options
from stream.store import StoreUnavailable, WindowAppend, WindowStore
from stream.worker.exceptions import NoModelError
from stream.worker.metrics import WorkerMetrics
from stream.worker.pseudonym import Pseudonymizer
from stream.worker.reload import ModelWatcher
from stream.worker.stepper import BatchOutput, StepInput, plan_batch, run_batch
from stream.worker.window_codec import encode_window_row, row_of

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

logger = logging.getLogger(__name__)

_IDLE_POLL_MS = 200  # how long an idle worker waits for a first record before re-checking stop
_REDIS_BACKOFF_MAX_S = 5.0
_json = msgspec.json.Encoder()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """What one batch sends: (topic, key, value) records and the events predicted."""

    records: list[tuple[str, bytes | None, bytes]]
    predicted_ts: list[int]
    dlq_codes: list[str]


class Worker:
    """One consumer-group member. Construct freely: nothing connects before :meth:`run`."""

    def __init__(self, settings: Settings, *, metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self.watcher = ModelWatcher(ModelRegistry(settings.model_registry), self.metrics)
        self.store = WindowStore(settings)
        self.decoder = EventDecoder(
            max_bytes=settings.max_event_bytes,
            future_skew_ms=settings.future_skew_s * 1000,
            min_ts_ms=settings.min_event_ts_ms,
        )
        self.pseudonymize = Pseudonymizer.from_settings(settings)
        self.records_done = 0  # records whose outputs were acknowledged and offsets committed
        self.assigned: set[TopicPartition] = set()  # kept current by the rebalance listener
        self._batch_lock = asyncio.Lock()
        self._kafka_ok = False
        self._redis_ok = False

    @property
    def model(self) -> LoadedModel | None:
        return self.watcher.model

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

        from stream.worker.web import WebServer

        settings = self.settings
        await self.watcher.poll_once()
        if self.watcher.model is None:
            raise NoModelError(f"no servable model in registry {settings.model_registry}")
        options = kafka_options(settings)
        producer = AIOKafkaProducer(**options, acks="all", linger_ms=2, max_batch_size=256 * 1024)
        consumer = AIOKafkaConsumer(
            **options,
            group_id=settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(100, settings.kafka_session_timeout_ms // 3),
        )
        web = WebServer(self, settings.http_host, settings.http_port)
        await producer.start()
        watch_task: asyncio.Task[None] | None = None
        try:
            await consumer.start()
            consumer.subscribe([settings.topic_events], listener=_FinishBatchOnRevoke(self._batch_lock, self.assigned))
            self._kafka_ok = self._redis_ok = True
            await web.start()
            watch_task = asyncio.create_task(self.watcher.watch(settings.model_poll_interval_s))
            logger.info("worker started: group %s, topic %s", settings.consumer_group, settings.topic_events)
            while not stop.is_set():
                batch = await self._fetch(consumer)
                if not batch:
                    continue
                async with self._batch_lock:
                    finished = await self._handle(consumer, producer, batch, stop)
                if not finished:
                    break
                if max_records is not None and self.records_done >= max_records:
                    break
        finally:
            if watch_task is not None:
                watch_task.cancel()
            await web.stop()
            await consumer.stop()
            await producer.stop()  # flushes whatever is still queued
            await self.store.close()
            self._kafka_ok = False
            logger.info("worker stopped after %d records", self.records_done)

    async def _fetch(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Up to ``batch_max_size`` records, waiting at most ``batch_linger_ms`` to fill a batch."""
        limit = self.settings.batch_max_size
        batch: dict[TopicPartition, list[ConsumerRecord]] = await consumer.getmany(
            timeout_ms=_IDLE_POLL_MS, max_records=limit
        )
        count = sum(len(records) for records in batch.values())
        deadline = time.monotonic() + self.settings.batch_linger_ms / 1000
        while 0 < count < limit and (remaining := deadline - time.monotonic()) > 0:
            more = await consumer.getmany(timeout_ms=int(remaining * 1000) or 1, max_records=limit - count)
            if not more:
                break
            for tp, records in more.items():
                batch.setdefault(tp, []).extend(records)
                count += len(records)
        return batch

    async def _handle(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        batch: dict[TopicPartition, list[ConsumerRecord]],
        stop: asyncio.Event,
    ) -> bool:
        """Process, publish and commit one batch; False if abandoned (shutdown during an outage)."""
        from aiokafka.errors import CommitFailedError

        metrics = self.metrics
        records = [record for records in batch.values() for record in records]
        metrics.events_in.inc(len(records))
        metrics.batch_size.observe(len(records))
        try:
            outgoing = await self._process_with_retries(records, stop)
        except RetryError:
            logger.warning("shutdown during a Redis outage: %d records left uncommitted", len(records))
            return False
        started = time.perf_counter()
        futures: list[Awaitable[Any]] = []
        for topic, key, value in outgoing.records:
            futures.append(await producer.send(topic, value=value, key=key))
        await asyncio.gather(*futures)
        published = _now_ms()
        metrics.stage_seconds.labels("produce").observe(time.perf_counter() - started)
        metrics.predictions_out.inc(len(outgoing.predicted_ts))
        for code in outgoing.dlq_codes:
            metrics.dlq.labels(code).inc()
        for ts in outgoing.predicted_ts:
            metrics.e2e_latency.observe(max(published - ts, 0) / 1000)

        started = time.perf_counter()
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # The partitions moved on: their new owner replays these records, which is harmless.
            logger.warning("commit refused after a rebalance (records will be replayed): %s", exc)
        metrics.stage_seconds.labels("commit").observe(time.perf_counter() - started)
        for tp, next_offset in offsets.items():
            highwater = consumer.highwater(TopicPartition(tp.topic, tp.partition))
            if highwater is not None:
                metrics.consumer_lag.labels(str(tp.partition)).set(max(highwater - next_offset, 0))
        self.records_done += len(records)
        return True

    async def _process_with_retries(self, records: Sequence[ConsumerRecord], stop: asyncio.Event) -> _Outgoing:
        """:meth:`_process`, retried while Redis is unreachable (every step of it is idempotent)."""

        def on_retry(state: RetryCallState) -> None:
            self._redis_ok = False
            self.metrics.redis_retries.inc()
            logger.warning("Redis unavailable, retrying the batch (attempt %d)", state.attempt_number)

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(StoreUnavailable),
            wait=wait_exponential_jitter(initial=0.05, max=_REDIS_BACKOFF_MAX_S),
            stop=lambda _state: stop.is_set(),
            before_sleep=on_retry,
        )
        async for attempt in retrying:
            with attempt:
                outgoing = await self._process(records)
                self._redis_ok = True
        return outgoing

    async def _process(self, records: Sequence[ConsumerRecord]) -> _Outgoing:
        settings, metrics = self.settings, self.metrics
        model = self.watcher.model  # read once: a reload lands between batches
        if model is None:
            raise NoModelError("no model")
        started = time.perf_counter()
        out: list[tuple[str, bytes | None, bytes]] = []
        dlq_codes: list[str] = []
        events: list[Event] = []
        appends: list[WindowAppend] = []
        rows = []
        now = _now_ms()
        for record in records:
            decoded = self.decoder.decode(record.value)
            if isinstance(decoded, InvalidEvent):
                out.append((settings.topic_dlq, record.key, _dead_letter(record, decoded, now)))
                dlq_codes.append(decoded.code)
                continue
            row = row_of(decoded)
            user_key = self.pseudonymize(decoded.user_id)
            events.append(decoded)
            rows.append(row)
            appends.append(WindowAppend(user_key, decoded.event_id, decoded.ts, encode_window_row(row)))
        metrics.stage_seconds.labels("decode").observe(time.perf_counter() - started)

        started = time.perf_counter()
        results = await self.store.append_batch(appends)
        items = [StepInput(a.user_key, row, result) for a, row, result in zip(appends, rows, results, strict=True)]
        plan, rebuild_users = plan_batch(items, model.version, force_rebuild=settings.worker_force_rebuild)
        windows = await self.store.read_windows(rebuild_users) if rebuild_users else {}
        redis_s = time.perf_counter() - started

        started = time.perf_counter()
        output = run_batch(model, items, plan, windows) if items else None
        model_s = time.perf_counter() - started

        started = time.perf_counter()
        if output is not None:
            await self.store.write_states(output.state_writes)
        redis_s += time.perf_counter() - started
        metrics.stage_seconds.labels("redis").observe(redis_s)

        started = time.perf_counter()
        if output is not None:
            out.extend(self._predictions(model, events, output))
            metrics.model_calls.inc(output.model_calls)
            for reason in plan.reasons:
                if reason is not None:
                    metrics.rebuilds.labels(reason.value).inc()
        metrics.stage_seconds.labels("model").observe(model_s + time.perf_counter() - started)
        return _Outgoing(out, [event.ts for event in events], dlq_codes)

    def _predictions(
        self, model: LoadedModel, events: Sequence[Event], output: BatchOutput
    ) -> list[tuple[str, bytes | None, bytes]]:
        topic, version, now = self.settings.topic_predictions, model.version, _now_ms()
        category_ids = model.category_ids(output.categories).tolist()
        scores = np.clip(output.scores, 0.0, 1.0).tolist()
        intents = np.clip(output.intent, 0.0, 1.0).tolist()
        history = output.history_len.tolist()
        records: list[tuple[str, bytes | None, bytes]] = []
        for i, event in enumerate(events):
            prediction = Prediction(
                user_id=event.user_id,
                event_id=event.event_id,
                event_ts=event.ts,
                predicted_at=now,
                model_version=version,
                demand=[CategoryScore(c, s) for c, s in zip(category_ids[i], scores[i], strict=True)],
                purchase_intent=intents[i],
                history_len=history[i],
            )
            records.append((topic, event.user_id.encode(), _json.encode(prediction)))
        return records


def _dead_letter(record: ConsumerRecord, invalid: InvalidEvent, now: int) -> bytes:
    letter = DeadLetter(
        code=invalid.code,
        reason=invalid.reason,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        payload_b64=base64.b64encode(record.value or b"").decode(),
        failed_at=now,
    )
    return _json.encode(letter)


class _FinishBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets the in-flight batch publish and commit before its partitions are taken away."""

    def __init__(self, lock: asyncio.Lock, assigned: set[TopicPartition]) -> None:
        self._lock = lock
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:
            self._assigned.difference_update(revoked)
            logger.info("partitions revoked: %s", sorted(f"{tp.topic}:{tp.partition}" for tp in revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned.update(assigned)
        logger.info("partitions assigned: %s", sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))
