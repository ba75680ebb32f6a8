"""One micro-batch of the worker: decode -> window/state -> model -> outgoing records.

:class:`BatchProcessor` knows nothing of Kafka clients: it takes the records of a batch and
returns what to publish plus the state writes to persist. The store, the model source and the
decoder are injected, so it runs in unit tests without servers (``stream.store.MemoryWindowStore``).
The service shell (``service.py``) publishes, then commits the batch's offsets; adapters for
other stream engines drive the same three calls:

1. ``batch = await processor.process(records)``
2. ``await processor.persist(batch)`` -- the write-behind, before the batch's offsets are committed
3. publish ``batch.records``, then commit.

The store holds the users of the owned partitions in process (``stream.store.owned``); both
calls are idempotent per event_id, so a batch retried after :class:`StoreUnavailable` (or
replayed after a crash) changes nothing twice. ``persist`` raises :class:`~stream.store.Fenced`
when another worker owns some of the batch's partitions now: nothing of those may be committed.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
import numpy as np

from stream.config import Settings
from stream.contracts import DeadLetter, Event, EventDecoder, InvalidEvent
from stream.contracts.predictions import DLQ_PAYLOAD_PREFIX_BYTES
from stream.registry import LoadedModel
from stream.store import StateWrite, WindowAppend
from stream.store.protocol import WindowStateStore
from stream.worker.exceptions import NoModelError
from stream.worker.metrics import WorkerMetrics
from stream.worker.predictions import PredictionEncoder
from stream.worker.pseudonym import Pseudonymizer
from stream.worker.state_codec import ModelState
from stream.worker.stepper import BatchOutput, StepInput, plan_batch, run_batch
from stream.worker.untrusted import Rejection, StateLimits, logged_key
from stream.worker.vocab_watch import VocabularyWatch
from stream.worker.window_codec import encode_window_row, row_of

logger = logging.getLogger(__name__)

_json = msgspec.json.Encoder()

OutgoingRecord = tuple[str, bytes | None, bytes]  # (topic, key, value)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SourceRecord(Protocol):
    """What the processor reads of an incoming record (aiokafka's ``ConsumerRecord`` has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(slots=True)
class ProcessedBatch:
    """What one batch sends, and the state it still has to persist before its offsets are committed."""

    records: list[OutgoingRecord]  # predictions and dead letters, in batch order
    predicted_ts: list[int]  # event ts of each prediction (for the latency histogram)
    dlq_codes: list[str]
    writes: list[StateWrite] = field(default_factory=list)
    new_states: list[ModelState] = field(default_factory=list)  # the decoded states of ``writes``


class BatchProcessor:
    """Turns batches of event records into predictions; see the module docstring for the calls."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: WindowStateStore,
        model: Callable[[], LoadedModel | None],
        metrics: WorkerMetrics,
        decoder: EventDecoder | None = None,
        pseudonymize: Pseudonymizer | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self._model = model
        self.metrics = metrics
        self.decoder = decoder or EventDecoder(
            max_bytes=settings.max_event_bytes,
            future_skew_ms=settings.future_skew_s * 1000,
            min_ts_ms=settings.min_event_ts_ms,
        )
        self.pseudonymize = pseudonymize or Pseudonymizer.from_settings(settings)
        self.vocab_watch = VocabularyWatch(metrics)
        self._prediction_encoder: PredictionEncoder | None = None  # of the serving model

    async def partitions_assigned(self, partitions: Collection[tuple[str, int]]) -> None:
        """Called after the consumer group assigned ``(topic, partition)`` pairs to this worker."""
        await self.store.assign({partition for _, partition in partitions})

    async def partitions_revoked(self, partitions: Collection[tuple[str, int]]) -> None:
        """Called once the batches of revoked partitions are committed, before they move."""
        # Another worker may change these users from now on: only Redis knows them for sure.
        await self.store.revoke({partition for _, partition in partitions})

    async def process(self, records: Sequence[SourceRecord]) -> ProcessedBatch:
        """Decode, append to the windows, run the model; returns what to publish and to persist."""
        try:
            return await self._process(records)
        except BaseException:
            self.store.abandon()  # the held users it changed are ahead of Redis: load them again
            raise

    async def _process(self, records: Sequence[SourceRecord]) -> ProcessedBatch:
        settings, metrics = self.settings, self.metrics
        model = self._model()  # read once: a reload lands between batches
        if model is None:
            raise NoModelError("no model")
        started = time.perf_counter()
        out: list[OutgoingRecord] = []
        dlq_codes: list[str] = []
        events: list[Event] = []
        appends: list[WindowAppend] = []
        rows = []
        category_ids: list[str | None] = []
        item_ids: list[str | None] = []
        now = now_ms()
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
            appends.append(
                WindowAppend(user_key, decoded.event_id, decoded.ts, encode_window_row(row), record.partition)
            )
        self.vocab_watch.observe(category_ids, item_ids, model.categories.known, model.encoder.items.known)
        metrics.stage_seconds.labels("decode").observe(time.perf_counter() - started)

        started = time.perf_counter()
        held: dict[str, ModelState] = self.store.held_states({append.user_key for append in appends})
        results = await self.store.append_batch(appends, {user: state.seq for user, state in held.items()})
        items = [StepInput(a.user_key, row, result) for a, row, result in zip(appends, rows, results, strict=True)]
        plan, rebuild_users = plan_batch(
            items, model.version, held=held, force_rebuild=settings.worker_force_rebuild, limits=StateLimits.of(model)
        )
        metrics.state_cache_hits.inc(sum(1 for user, state in plan.stored.items() if held.get(user) is state))
        windows = await self.store.read_windows(rebuild_users) if rebuild_users else {}
        metrics.stage_seconds.labels("redis").observe(time.perf_counter() - started)

        started = time.perf_counter()
        # Not in a thread: measured side by side, handing the model work to a thread (so that the
        # loop could read fetch responses meanwhile) cost more in GIL hand-offs than it overlapped.
        output = run_batch(model, items, plan, windows) if items else None
        metrics.stage_seconds.labels("model").observe(time.perf_counter() - started)

        started = time.perf_counter()
        batch = ProcessedBatch(out, [event.ts for event in events], dlq_codes)
        if output is not None:
            out.extend(self._predictions(model, events, output))
            batch.writes, batch.new_states = output.state_writes, output.new_states
            metrics.model_calls.inc(output.model_calls)
            metrics.onnx_seconds.inc(output.onnx_seconds)
            for reason in plan.reasons:
                if reason is not None:
                    metrics.rebuilds.labels(reason.value).inc()
            self._report_rejected([*plan.rejected, *output.rejected])
        metrics.stage_seconds.labels("encode").observe(time.perf_counter() - started)
        return batch

    async def persist(self, batch: ProcessedBatch) -> None:
        """Write the batch's changes behind; call before committing the batch's offsets.

        Raises :class:`~stream.store.Fenced` (the store has dropped the lost partitions' users).
        """
        started = time.perf_counter()
        writes = batch.writes  # with their decoded states, which own their arrays (the stepper copied them)
        try:
            await self.store.write_states(writes)
            await self.store.flush()
        except BaseException:
            self.store.abandon()  # (a no-op after Fenced: flush dropped those users)
            raise
        self.metrics.stage_seconds.labels("redis").observe(time.perf_counter() - started)

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

    def _predictions(self, model: LoadedModel, events: Sequence[Event], output: BatchOutput) -> list[OutgoingRecord]:
        encoder = self._prediction_encoder
        if encoder is None or encoder.version != model.version:
            targets = model.category_ids(np.arange(len(model.targets)))
            encoder = self._prediction_encoder = PredictionEncoder(model.version, targets.tolist())
        values = encoder.encode(events, output.categories, output.scores, output.intent, output.history_len, now_ms())
        topic = self.settings.topic_predictions
        return [(topic, event.user_id.encode(), value) for event, value in zip(events, values, strict=True)]


def _dead_letter(record: SourceRecord, invalid: InvalidEvent, now: int) -> bytes:
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
