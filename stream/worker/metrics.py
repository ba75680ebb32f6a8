"""Prometheus metrics of one worker, in its own registry (tests run several workers at once)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

# model = the stepper incl. ONNX (ONNX alone: onnx_seconds); encode = prediction JSON.
STAGES = ("decode", "redis", "model", "encode", "produce", "commit")

# Batch stage times run from ~50 µs to seconds under a Redis outage.
_STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
# Event time -> publish: milliseconds when live, hours when a backlog is replayed.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0, 3600.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class WorkerMetrics:
    """Every metric the worker exports (names prefixed ``demandstream_worker_``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r, p = self.registry, "demandstream_worker_"
        self.events_in = Counter(p + "events_in", "Records consumed from the events topic.", registry=r)
        self.predictions_out = Counter(p + "predictions_out", "Predictions acknowledged by the broker.", registry=r)
        self.dlq = Counter(p + "dlq_records", "Invalid events sent to the DLQ, by reason code.", ["code"], registry=r)
        self.records_refused = Counter(
            p + "records_refused",
            "Outgoing records the broker refused for good (size, format, authorization), by topic and error.",
            ["topic", "error"],
            registry=r,
        )
        self.batch_size = Histogram(p + "batch_size", "Records per micro-batch.", buckets=_BATCH_BUCKETS, registry=r)
        self.stage_seconds = Histogram(
            p + "stage_seconds", "Seconds per batch spent in each stage.", ["stage"], buckets=_STAGE_BUCKETS, registry=r
        )
        self.e2e_latency = Histogram(
            p + "e2e_latency_seconds",
            "Event ts to prediction publish (acknowledged), for events within the latency horizon.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.backfill = Counter(
            p + "predictions_backfill",
            "Predictions for events older than the latency horizon (a replay or backlog), kept out of e2e_latency.",
            registry=r,
        )
        self.vocab_checked = Counter(
            p + "vocab_checked", "Events naming a category/item, checked against the model.", ["field"], registry=r
        )
        self.vocab_unknown = Counter(
            p + "vocab_unknown", "Events whose category/item the serving model does not know.", ["field"], registry=r
        )
        self.vocab_unknown_share = Gauge(
            p + "vocab_unknown_share",
            "Share of the last events whose category/item the serving model does not know.",
            ["field"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            p + "consumer_lag", "Records behind the partition high watermark.", ["partition"], registry=r
        )
        self.rebuilds = Counter(
            p + "state_rebuilds", "Events whose state was rebuilt from the window, by reason.", ["reason"], registry=r
        )
        self.stored_rejected = Counter(
            p + "stored_data_rejected",
            "Values read from Redis that were not used (their user was rebuilt), by key and reason.",
            ["key", "reason"],
            registry=r,
        )
        self.state_cache_hits = Counter(
            p + "state_cache_hits",
            "Users of a batch whose decoded state the worker held itself (no blob decoded).",
            registry=r,
        )
        self.held_users = Gauge(p + "held_users", "Users of the owned partitions held in memory.", registry=r)
        self.user_loads = Counter(
            p + "user_loads", "Users loaded from Redis (first sight after an assignment, or evicted).", registry=r
        )
        self.fenced = Counter(
            p + "fenced", "Batches whose write-behind was refused: another worker owns the partition now.", registry=r
        )
        self.model_calls = Counter(p + "model_calls", "ONNX runs.", registry=r)
        self.onnx_seconds = Counter(
            p + "onnx_seconds", "Seconds inside onnxruntime (part of the model stage).", registry=r
        )
        self.reloads = Counter(p + "model_reloads", "Model version switches, by outcome.", ["outcome"], registry=r)
        self.model_version = Info(p + "model", "The model version serving now.", registry=r)
        self.redis_retries = Counter(p + "redis_retries", "Batches retried after a Redis connection error.", registry=r)
        self.ready = Gauge(p + "ready", "1 when the worker is ready (model, Redis, Kafka).", registry=r)
        for stage in STAGES:
            self.stage_seconds.labels(stage)  # export zeros before the first batch

    def observe_latency(self, published_ms: int, event_ts: Iterable[int], horizon_ms: int) -> None:
        """Event time -> publish for recent events; older ones (backfill) are only counted.

        A replayed day would otherwise put hours into a histogram meant to show live latency.
        """
        backfill = 0
        for ts in event_ts:
            age_ms = published_ms - ts
            if age_ms > horizon_ms:
                backfill += 1
            else:
                self.e2e_latency.observe(max(age_ms, 0) / 1000)
        if backfill:
            self.backfill.inc(backfill)

    def stage_total(self, stage: str) -> float:
        """Seconds spent in ``stage`` so far (for the benchmark)."""
        value = self.registry.get_sample_value("demandstream_worker_stage_seconds_sum", {"stage": stage})
        return value or 0.0
