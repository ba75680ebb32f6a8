"""What the worker measures about its inputs: events the model has no vocabulary for, and events
too old for the live latency histogram (backfill)."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from stream.worker.metrics import WorkerMetrics
from stream.worker.vocab_watch import VocabularyWatch

KNOWN = {"c1", "c2"}


def _value(metrics: WorkerMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value("demandstream_worker_" + name, labels or {}) or 0.0


def test_latency_counts_only_recent_events_and_backfill_apart() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    published = 10_000_000
    metrics.observe_latency(published, [published - 40, published - 2_000, published - 3_600_000], horizon_ms=60_000)
    assert _value(metrics, "e2e_latency_seconds_count") == 2
    assert _value(metrics, "e2e_latency_seconds_sum") == pytest.approx(2.04)
    assert _value(metrics, "predictions_backfill_total") == 1


def test_unknown_categories_are_counted_and_warned_about_once_the_window_is_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    watch = VocabularyWatch(metrics, window=10, warn_share=0.5)
    caplog.set_level(logging.WARNING, logger="stream.worker.vocab_watch")
    watch.observe(["zz"] * 9, [None] * 9, KNOWN, set())
    assert not caplog.records  # 9 of 10: not yet a full window
    watch.observe(["zz", "c1"], ["i1", None], KNOWN, set())
    assert _value(metrics, "vocab_checked_total", {"field": "category"}) == 11
    assert _value(metrics, "vocab_unknown_total", {"field": "category"}) == 10
    assert _value(metrics, "vocab_unknown_share", {"field": "category"}) == pytest.approx(10 / 11)
    assert _value(metrics, "vocab_unknown_total", {"field": "item"}) == 1
    (record,) = caplog.records
    assert "91% of the last 11 events" in record.getMessage() and "retrain" in record.getMessage()
    watch.observe(["zz"] * 10, [None] * 10, KNOWN, set())
    assert len(caplog.records) == 1  # at most one warning a minute


def test_the_share_follows_the_recent_batches(caplog: pytest.LogCaptureFixture) -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    watch = VocabularyWatch(metrics, window=10, warn_share=0.5)
    caplog.set_level(logging.WARNING, logger="stream.worker.vocab_watch")
    watch.observe(["zz"] * 10, [None] * 10, KNOWN, set())  # a catalogue the model does not know...
    assert watch.share("category") == 1.0 and len(caplog.records) == 1
    for _ in range(3):
        watch.observe(["c1", "c2", "zz", "c1", "c2"], [None] * 5, KNOWN, set())  # ...then one it mostly knows
    assert watch.share("category") == pytest.approx(0.2)  # the last two batches: the first fell out
    assert _value(metrics, "vocab_checked_total", {"field": "category"}) == 25
