"""The insights stream job: an aiokafka consumer (its own consumer group) of the predictions
and events topics that folds each micro-batch into the Redis aggregates.

Semantics: the batch's aggregates and the offsets it covers are written in one Redis
transaction (see :mod:`insights.store`); Kafka offsets are committed after that. After a crash
the replayed records below the Redis offsets are skipped, so no batch is counted twice.
Invalid payloads are the worker's business (it dead-letters them); here they are counted and
skipped. Open search sessions live in process memory: a rebalance or restart may miss the
conversion of a session that straddles it (documented in docs/insights.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import msgspec

from insights.aggregate import Aggregator
from insights.store import BatchDelta, InsightsStore
from stream.config import Settings
from stream.contracts import Event, EventDecoder, Prediction
from stream.kafka_options import kafka_options

log = logging.getLogger(__name__)

DEFAULT_GROUP = "demandstream-insights"


class InsightsJob:
    """Consumes predictions + events into the insights aggregates until stopped."""

    def __init__(
        self,
        settings: Settings,
        group: str = DEFAULT_GROUP,
        store: InsightsStore | None = None,
    ) -> None:
        self._settings = settings
        self._group = group
        self.store = store or InsightsStore(settings)
        self._aggregator = Aggregator(settings.insights_bucket_s)
        self._predictions = msgspec.json.Decoder(Prediction)
        self._events = EventDecoder(
            max_bytes=settings.max_event_bytes,
            future_skew_ms=settings.future_skew_s * 1000,
            min_ts_ms=settings.min_event_ts_ms,
        )
        self._offsets: dict[str, int] = {}
        self.stats: Counter[str] = Counter()

    def fold(self, topic: str, partition: int, records: list[Any], delta: BatchDelta) -> None:
        """Add one partition's records to ``delta``, skipping those already in Redis."""
        key = f"{topic}:{partition}"
        done = self._offsets.get(key, 0)
        for record in records:
            if record.offset < done:
                self.stats["replayed"] += 1
                continue
            delta.offsets[key] = record.offset + 1
            if topic == self._settings.topic_predictions:
                try:
                    self._aggregator.add_prediction(delta, self._predictions.decode(record.value))
                except (msgspec.DecodeError, TypeError):
                    self.stats["invalid_prediction"] += 1
                    continue
                self.stats["predictions"] += 1
            else:
                event = self._events.decode(record.value)
                if not isinstance(event, Event):
                    self.stats["invalid_event"] += 1
                    continue
                self._aggregator.add_event(delta, event)
                self.stats["events"] += 1

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set (or the task is cancelled)."""
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

        settings = self._settings
        stop = stop or asyncio.Event()
        consumer = AIOKafkaConsumer(
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(100, settings.kafka_session_timeout_ms // 3),
            **kafka_options(settings),
        )
        job = self

        class _ReloadOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
            # Another member may have written batches for these partitions since we last
            # read them: take the Redis offsets again before consuming them.
            async def on_partitions_revoked(self, revoked: Any) -> None:
                return None

            async def on_partitions_assigned(self, assigned: Any) -> None:
                job._offsets = await job.store.load_offsets()

        consumer.subscribe([settings.topic_predictions, settings.topic_events], listener=_ReloadOffsets())
        try:
            self._offsets = await self.store.load_offsets()
            await consumer.start()
        except BaseException:
            await consumer.stop()  # not started, but it holds a client that would be reported unclosed
            raise
        log.info("insights job started", extra={"group": self._group})
        try:
            while not stop.is_set():
                batches = await consumer.getmany(
                    timeout_ms=max(50, settings.batch_linger_ms * 10),
                    max_records=settings.batch_max_size,
                )
                if not batches:
                    continue
                delta = BatchDelta()
                for tp, records in batches.items():
                    self.fold(tp.topic, tp.partition, records, delta)
                await self.store.write(delta)
                self._offsets.update(delta.offsets)
                await consumer.commit()
                self.stats["batches"] += 1
        finally:
            await consumer.stop()
            log.info("insights job stopped", extra=dict(self.stats))
