"""The stream worker: aiokafka micro-batches -> Redis window/state -> ONNX -> predictions.

``await Worker(settings).run(stop_event)`` runs one member of the consumer group until
``stop_event`` is set; see docs/worker.md for the design and the measurements behind it.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
import numpy as np
from aiokafka import ConsumerRebalanceListener, TopicPartition
from tenacity import RetryCallState, RetryError

from stream.config import Settings
from stream.contracts import DeadLetter, Event, EventDecoder, InvalidEvent
from stream.contracts.predictions import DLQ_PAYLOAD_PREFIX_BYTES
from stream.features.text import load_segmenter
from stream.kafka_options import kafka_options
from stream.registry import LoadedModel, ModelRegistry
from stream.retry import RetryPolicy
from stream.store import StoreUnavailable, WindowAppend, WindowStore
from stream.worker.connectivity import publish_with_retries, stop_within, wait_for_kafka, watch_kafka
from stream.worker.exceptions import NoModelError
from stream.worker.metrics import WorkerMetrics
from stream.worker.predictions import PredictionEncoder
from stream.worker.pseudonym import Pseudonymizer
from stream.worker.publish import BatchPublisher
from stream.worker.reload import ModelWatcher
from stream.worker.state_cache import StateCache
from stream.worker.stepper import BatchOutput, StepInput, plan_batch, run_batch
from stream.worker.untrusted import Rejection, StateLimits, logged_key
from stream.worker.vocab_watch import VocabularyWatch
from stream.worker.window_codec import encode_window_row, row_of

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, ConsumerRecord

logger = logging.getLogger(__name__)

_IDLE_POLL_MS = 200  # how long an idle worker waits for a first record before re-checking stop
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
        self.retry_policy = RetryPolicy.from_settings(settings)
        self.watcher = ModelWatcher(
            ModelRegistry(settings.model_registry),
            self.metrics,
            policy=self.retry_policy,
            load_attempts=settings.model_load_attempts,
            redis_window=settings.window_size,
        )
        self.store = WindowStore(settings)
        self.decoder = EventDecoder(
            max_bytes=settings.max_event_bytes,
            future_skew_ms=settings.future_skew_s * 1000,
            min_ts_ms=settings.min_event_ts_ms,
        )
        self.pseudonymize = Pseudonymizer.from_settings(settings)
        self.state_cache = StateCache(settings.worker_state_cache_users)
        self.vocab_watch = VocabularyWatch(self.metrics)
        self.records_done = 0  # records whose outputs were acknowledged and offsets committed
        self.assigned: set[TopicPartition] = set()  # kept current by the rebalance listener
        self._batch_lock = asyncio.Lock()
        self._in_flight: asyncio.Task[bool] | None = None  # publish + commit of the last processed batch
        self._records_in_flight = 0
        self._prediction_encoder: PredictionEncoder | None = None  # of the serving model
        self._kafka_ok = False
        self._kafka_outage = False  # set when the probe finds Kafka down, cleared by the rewind after it
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
            consumer.subscribe(
                [settings.topic_events],
                listener=_FinishBatchOnRevoke(self._batch_lock, self._wait_in_flight, self.assigned, self.state_cache),
            )
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
                    await self._rewind_to_committed(consumer)
                batch = await self._fetch(consumer)
                if not batch:
                    if not await self._drain():
                        break
                    if max_records is not None and self.records_done >= max_records:
                        break
                    await self._rewind_past_log_end(consumer)
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

    async def _rewind_to_committed(self, consumer: AIOKafkaConsumer) -> None:
        """After a broker outage, continue from the group's committed offsets (earliest where none).

        The consumer's in-memory positions assume the log it left; a broker that came back without
        its data (or a failover that truncated a partition) can leave them inside the new log and
        records would be skipped. Re-reading from the last commit is safe: at-least-once output,
        and window/state updates are idempotent per event_id.
        """
        for tp in consumer.assignment():
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        logger.info("Kafka back: resumed %d partitions from their committed offsets", len(consumer.assignment()))

    async def _rewind_past_log_end(self, consumer: AIOKafkaConsumer) -> None:
        """Re-read from the earliest offset any partition whose position lies past its log end.

        Kafka answers a fetch past the end with OFFSET_OUT_OF_RANGE and the consumer applies its
        reset policy; brokers that answer with an empty fetch instead (tansu) would leave the
        worker waiting there, silently skipping everything written below that offset. That
        happens when a broker comes back without its data and a commit from before the outage
        points past the new log. Checked only when a fetch found nothing, so it costs no time
        under load.
        """
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is None:
                continue
            position = await consumer.position(tp)
            if position > end:
                logger.warning(
                    "%s-%d: position %d is past the log end %d (broker lost records?): reading from the earliest",
                    tp.topic,
                    tp.partition,
                    position,
                    end,
                )
                await consumer.seek_to_beginning(tp)

    async def _fetch(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Up to ``batch_max_size`` records, waiting at most ``batch_linger_ms`` to fill a batch.

        Adaptive: lingering only pays while records keep arriving. Once a fetch finds nothing
        more buffered the batch goes as it is, so a lightly loaded worker does not add the linger
        to every event's latency; under load the records that arrive while a batch is being
        processed make the next batch large.
        """
        limit = self.settings.batch_max_size
        batch: dict[TopicPartition, list[ConsumerRecord]] = await consumer.getmany(
            timeout_ms=_IDLE_POLL_MS, max_records=limit
        )
        count = sum(len(records) for records in batch.values())
        deadline = time.monotonic() + self.settings.batch_linger_ms / 1000
        while 0 < count < limit and deadline - time.monotonic() > 0:
            more = await consumer.getmany(timeout_ms=0, max_records=limit - count)
            if not more:
                break
            for tp, records in more.items():
                batch.setdefault(tp, []).extend(records)
                count += len(records)
        return batch

    async def _start_batch(
        self,
        consumer: AIOKafkaConsumer,
        publisher: BatchPublisher,
        batch: dict[TopicPartition, list[ConsumerRecord]],
        stop: asyncio.Event,
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
        if not await self._drain():
            return False
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        self._records_in_flight = len(records)
        self._in_flight = asyncio.create_task(
            self._publish_and_commit(consumer, publisher, outgoing, offsets, len(records), stop)
        )
        return True

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
        outgoing: _Outgoing,
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
        published = _now_ms()
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

    async def _process_with_retries(self, records: Sequence[ConsumerRecord], stop: asyncio.Event) -> _Outgoing:
        """:meth:`_process`, retried while Redis is unreachable (every step of it is idempotent)."""

        def on_retry(state: RetryCallState) -> None:
            self._redis_ok = False
            self.metrics.redis_retries.inc()
            logger.warning("Redis unavailable, retrying the batch (attempt %d)", state.attempt_number)

        async for attempt in self.retry_policy.retrying(StoreUnavailable, stop=stop, before_sleep=on_retry):
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
        category_ids: list[str | None] = []
        item_ids: list[str | None] = []
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
            category_ids.append(decoded.category_id)
            item_ids.append(decoded.item_id)
            rows.append(row)
            appends.append(WindowAppend(user_key, decoded.event_id, decoded.ts, encode_window_row(row)))
        self.vocab_watch.observe(category_ids, item_ids, model.categories, model.encoder.items)
        metrics.stage_seconds.labels("decode").observe(time.perf_counter() - started)

        started = time.perf_counter()
        held = self.state_cache.known({append.user_key for append in appends})
        results = await self.store.append_batch(appends, {user: state.seq for user, state in held.items()})
        items = [StepInput(a.user_key, row, result) for a, row, result in zip(appends, rows, results, strict=True)]
        plan, rebuild_users = plan_batch(
            items, model.version, held=held, force_rebuild=settings.worker_force_rebuild, limits=StateLimits.of(model)
        )
        metrics.state_cache_hits.inc(sum(1 for user, state in plan.stored.items() if held.get(user) is state))
        windows = await self.store.read_windows(rebuild_users) if rebuild_users else {}
        redis_s = time.perf_counter() - started

        started = time.perf_counter()
        # Not in a thread: measured side by side, handing the model work to a thread (so that the
        # loop could read fetch responses meanwhile) cost more in GIL hand-offs than it overlapped.
        output = run_batch(model, items, plan, windows) if items else None
        metrics.stage_seconds.labels("model").observe(time.perf_counter() - started)

        started = time.perf_counter()
        if output is not None:
            stored = await self.store.write_states(output.state_writes)
            writes = list(zip(output.state_writes, output.new_states, stored, strict=True))
            self.state_cache.store({write.user_key: state for write, state, ok in writes if ok})
            self.state_cache.discard(write.user_key for write, _, ok in writes if not ok)
        redis_s += time.perf_counter() - started
        metrics.stage_seconds.labels("redis").observe(redis_s)

        started = time.perf_counter()
        if output is not None:
            out.extend(self._predictions(model, events, output))
            metrics.model_calls.inc(output.model_calls)
            metrics.onnx_seconds.inc(output.onnx_seconds)
            for reason in plan.reasons:
                if reason is not None:
                    metrics.rebuilds.labels(reason.value).inc()
            self._report_rejected([*plan.rejected, *output.rejected])
        metrics.stage_seconds.labels("encode").observe(time.perf_counter() - started)
        return _Outgoing(out, [event.ts for event in events], dlq_codes)

    def _report_rejected(self, rejected: Sequence[Rejection]) -> None:
        """Count and log stored values the batch could not use (their users were rebuilt)."""
        for item in rejected:
            self.metrics.stored_rejected.labels(item.key.value, item.reason.value).inc(item.values)
            key = logged_key(
                self.settings.redis_key_prefix, item.user_key, item.key, pseudonymised=self.pseudonymize.enabled
            )
            logger.warning(
                "stored %s %s: %d value(s) not used (%s): %s; user rebuilt",
                item.key.value,
                key,
                item.values,
                item.reason.value,
                item.detail[:200],
            )

    def _predictions(
        self, model: LoadedModel, events: Sequence[Event], output: BatchOutput
    ) -> list[tuple[str, bytes | None, bytes]]:
        encoder = self._prediction_encoder
        if encoder is None or encoder.version != model.version:
            targets = model.category_ids(np.arange(len(model.targets)))
            encoder = self._prediction_encoder = PredictionEncoder(model.version, targets.tolist())
        values = encoder.encode(events, output.categories, output.scores, output.intent, output.history_len, _now_ms())
        topic = self.settings.topic_predictions
        return [(topic, event.user_id.encode(), value) for event, value in zip(events, values, strict=True)]


def _dead_letter(record: ConsumerRecord, invalid: InvalidEvent, now: int) -> bytes:
    payload = record.value or b""
    letter = DeadLetter(
        code=invalid.code,
        reason=invalid.reason,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        payload_b64=base64.b64encode(payload[:DLQ_PAYLOAD_PREFIX_BYTES]).decode(),
        failed_at=now,
        payload_bytes=len(payload),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
    )
    return _json.encode(letter)


class _FinishBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets the batches in progress publish and commit before their partitions are taken away."""

    def __init__(
        self,
        lock: asyncio.Lock,
        wait_in_flight: Callable[[], Awaitable[None]],
        assigned: set[TopicPartition],
        state_cache: StateCache,
    ) -> None:
        self._lock = lock
        self._wait_in_flight = wait_in_flight
        self._assigned = assigned
        self._state_cache = state_cache

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:  # the batch being processed has been handed to its publish task
            await self._wait_in_flight()
            self._assigned.difference_update(revoked)
            # Another worker may write these users' states now: only Redis knows them for sure.
            self._state_cache.clear("partitions revoked")
            logger.info("partitions revoked: %s", sorted(f"{tp.topic}:{tp.partition}" for tp in revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned.update(assigned)
        self._state_cache.clear("partitions assigned")
        logger.info("partitions assigned: %s", sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))
