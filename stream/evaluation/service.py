"""``demandstream evaluate``: its own consumer group over the events and predictions topics.

Why a separate consumer rather than code in every worker: it needs each user's *next* event
after a prediction, which a worker has only in its Redis window (one more read per event on the
hot path), and it must see every model version's predictions whichever worker made them. Its
state is small and rebuilt from the topics after a restart (metrics restart with it); offsets are
auto-committed because a lost or repeated judgement only nudges a sliding average.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zipfile
from dataclasses import replace
from typing import Any

import msgspec

from stream.config import Settings
from stream.contracts import Event, EventDecoder, Prediction
from stream.evaluation.blend import BlendBaseline, baseline_path
from stream.evaluation.scoring import IntentOutcome, Judged, OnlineScorer, RepeatBaseline
from stream.evaluation.shadow import ShadowRunner, in_sample
from stream.evaluation.windows import OnlineMetrics
from stream.registry import LoadedModel, ModelRegistry, RegistryError

log = logging.getLogger(__name__)

_PUBLISH_EVERY_S = 5.0
EVAL_K = 10  # MRR@10 / Recall@10, the metrics the trainer gates on


def serving_baseline(settings: Settings) -> RepeatBaseline:
    """The ``repeat`` baseline with the serving version's tuned parameters and target vocabulary
    (defaults and every category without one)."""
    registry = ModelRegistry(settings.model_registry)
    recorded: dict[str, object] = {}
    vocabulary = None
    try:
        current = registry.current_version()
        if current is not None:
            recorded = registry.manifest(current).metrics.get("baselines", {})
            vocabulary = frozenset(LoadedModel.load(registry, current).targets.tokens)
    except RegistryError as exc:
        log.warning("serving model unavailable for the baseline (%s); using defaults", exc)
    params, popular = recorded.get("repeat"), recorded.get("popular")
    return RepeatBaseline.from_params(
        params if isinstance(params, dict) else {}, vocabulary, popular if isinstance(popular, dict) else None
    )


def serving_blend(settings: Settings) -> BlendBaseline | None:
    """The serving version's fitted blend baseline (saved by the trainer), or ``None`` (an older
    version, or none serving): then the live baseline is ``repeat``."""
    registry = ModelRegistry(settings.model_registry)
    try:
        current = registry.current_version()
    except RegistryError:
        return None
    path = baseline_path(settings.model_registry, current) if current else None
    if path is None or not path.is_file():
        log.warning("no fitted blend baseline for %s; the live baseline is repeat", current)
        return None
    try:
        return BlendBaseline.load(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("cannot read the blend baseline %s (%s); the live baseline is repeat", path, exc)
        return None


class Evaluator:
    """Feeds both topics into an :class:`OnlineScorer` and its judgements into :class:`OnlineMetrics`."""

    def __init__(
        self, settings: Settings, baseline: RepeatBaseline | None = None, blend: BlendBaseline | None = None
    ) -> None:
        """Without ``baseline``: the serving version's repeat parameters and, when the trainer saved
        it, its blend (the live baseline is then the blend)."""
        self.settings = settings
        if baseline is None:
            baseline, blend = serving_baseline(settings), blend or serving_blend(settings)
        self.scorer = OnlineScorer(baseline, k=EVAL_K, blend=blend)
        self.metrics = OnlineMetrics(settings.evaluation_window_s * 1000, k=EVAL_K)
        self.decoder = EventDecoder(min_ts_ms=settings.min_event_ts_ms, max_bytes=settings.max_event_bytes)
        self._predictions = msgspec.json.Decoder(Prediction)
        self.registry = ModelRegistry(settings.model_registry)
        self.shadow = ShadowRunner(self.registry, settings.evaluation_shadow_sample)
        self.shadow.refresh()
        self.records = 0
        self.skipped = 0

    def _record(self, user_id: str, judged: list[Judged], intents: list[IntentOutcome]) -> None:
        """Record; the serving model's judgements of shadow-sampled users are also recorded under
        ``<version>@sample``, the like-for-like reference of the shadows' numbers."""
        self.metrics.record(judged, intents)
        if self.shadow.shadows and in_sample(user_id, self.shadow.share):
            served = [replace(j, version=f"{j.version}@sample") for j in judged if j.version not in self.shadow.shadows]
            self.metrics.record(served, [])

    def handle(self, topic: str, value: bytes | None) -> None:
        """One record of either topic; undecodable ones are counted and skipped (the worker DLQs them)."""
        self.records += 1
        if value is None:
            self.skipped += 1
            return
        if topic == self.settings.topic_predictions:
            try:
                prediction = self._predictions.decode(value)
            except msgspec.DecodeError:
                self.skipped += 1
                return
            self._record(prediction.user_id, *self.scorer.add_prediction(prediction))
            return
        event = self.decoder.decode(value)
        if not isinstance(event, Event):
            self.skipped += 1
            return
        self._record(event.user_id, *self.scorer.add_event(event))
        for shadow_prediction in self.shadow.observe(event):
            self.metrics.record(*self.scorer.add_prediction(shadow_prediction))

    async def run(self, stop: asyncio.Event, *, idle_stop_s: float | None = None) -> None:
        """Consume until ``stop`` (or, with ``idle_stop_s``, until nothing arrived for that long)."""
        from aiokafka import AIOKafkaConsumer

        from stream.kafka_options import kafka_options

        settings = self.settings
        if settings.evaluation_port:
            from prometheus_client import start_http_server

            start_http_server(settings.evaluation_port, addr=settings.http_host, registry=self.metrics.registry)
        consumer = AIOKafkaConsumer(
            settings.topic_events,
            settings.topic_predictions,
            **kafka_options(settings),
            group_id=settings.evaluation_group,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(100, settings.kafka_session_timeout_ms // 3),
        )
        await consumer.start()
        last_data = published = time.monotonic()
        try:
            while not stop.is_set():
                batches: dict[Any, list[Any]] = await consumer.getmany(timeout_ms=200, max_records=2048)
                now = time.monotonic()
                for tp, records in batches.items():
                    for record in records:
                        self.handle(tp.topic, record.value)
                if batches:
                    last_data = now
                elif idle_stop_s is not None and now - last_data > idle_stop_s:
                    break
                if now - published > _PUBLISH_EVERY_S:
                    self.publish()
                    published = now
        finally:
            self.publish()
            await consumer.stop()

    def publish(self) -> dict[str, dict[str, float]]:
        """Set the gauges, share the window's numbers through the registry (``models promote``
        reads them for shadows), and pick up shadow marks."""
        summary = self.metrics.publish()
        try:
            self.registry.write_live_metrics(summary)
        except OSError as exc:
            log.warning("cannot write live metrics to the registry: %s", exc)
        self.shadow.refresh()
        for version, row in summary.items():
            log.info("online %s: %s", version, {k: round(v, 4) for k, v in row.items()})
        return summary
