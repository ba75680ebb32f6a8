"""Online metrics per model version: cumulative Prometheus counters (so any Prometheus range is a
sliding window: ``rate(rr_sum[1h]) / rate(judged[1h])``) and gauges over a sliding window of
*event* time, which stays meaningful when a backlog or a replay is read at full speed."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

from stream.evaluation.scoring import IntentOutcome, Judged

METHODS = ("model", "baseline")
INTENT_BINS = 10
_P = "demandstream_eval_"


@dataclass
class _Window:
    # a heap by event time: partitions are read at different paces, so entries arrive out of order
    entries: list[tuple[int, float, int, float, int]] = field(default_factory=list)
    rr_model: float = 0.0
    hit_model: int = 0
    rr_baseline: float = 0.0
    hit_baseline: int = 0
    # Each version slides with its own newest judged event: a shadow, judged as events arrive, runs
    # ahead of the serving model, judged when the worker's predictions arrive.
    watermark: int = 0

    def add(self, ts: int, rr_m: float, hit_m: int, rr_b: float, hit_b: int) -> None:
        self.watermark = max(self.watermark, ts)
        heapq.heappush(self.entries, (ts, rr_m, hit_m, rr_b, hit_b))
        self.rr_model += rr_m
        self.hit_model += hit_m
        self.rr_baseline += rr_b
        self.hit_baseline += hit_b

    def evict_before(self, ts: int) -> None:
        while self.entries and self.entries[0][0] < ts:
            _, rr_m, hit_m, rr_b, hit_b = heapq.heappop(self.entries)
            self.rr_model -= rr_m
            self.hit_model -= hit_m
            self.rr_baseline -= rr_b
            self.hit_baseline -= hit_b


@dataclass
class _Intent:
    n: list[int] = field(default_factory=lambda: [0] * INTENT_BINS)
    bought: list[int] = field(default_factory=lambda: [0] * INTENT_BINS)
    p_sum: list[float] = field(default_factory=lambda: [0.0] * INTENT_BINS)
    brier_sum: float = 0.0

    def ece(self) -> float:
        total = sum(self.n)
        if not total:
            return 0.0
        return sum(abs(b - p) for n, b, p in zip(self.n, self.bought, self.p_sum, strict=True) if n) / total


class OnlineMetrics:
    """Records judged predictions; ``summary()`` is the window's numbers per version."""

    def __init__(self, window_ms: int, k: int = 10, registry: CollectorRegistry | None = None) -> None:
        self.window_ms = window_ms
        self.k = k
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.judged = Counter(_P + "judged", "Predictions judged against the next event.", ["version"], registry=r)
        self.rr_sum = Counter(
            _P + "reciprocal_rank_sum", f"Sum of 1/rank@{k} of the next category.", ["version", "method"], registry=r
        )
        self.hits = Counter(_P + "hits", f"Next categories in the top {k}.", ["version", "method"], registry=r)
        self.window_mrr = Gauge(
            _P + "window_mrr", f"MRR@{k} over the event-time window.", ["version", "method"], registry=r
        )
        self.window_recall = Gauge(
            _P + "window_recall", f"Recall@{k} over the event-time window.", ["version", "method"], registry=r
        )
        self.window_events = Gauge(_P + "window_events", "Judged predictions in the window.", ["version"], registry=r)
        self.intent_judged = Counter(_P + "intent_judged", "Intents judged.", ["version"], registry=r)
        self.intent_brier_sum = Counter(
            _P + "intent_brier_sum", "Sum of squared intent errors.", ["version"], registry=r
        )
        self.intent_bin = Counter(
            _P + "intent_bin_events", "Judged intents per probability decile.", ["version", "bin"], registry=r
        )
        self.intent_bin_bought = Counter(
            _P + "intent_bin_purchases", "Of those, followed by a purchase.", ["version", "bin"], registry=r
        )
        self.intent_ece = Gauge(_P + "intent_ece", "Expected calibration error (deciles).", ["version"], registry=r)
        self.windows: dict[str, _Window] = {}
        self.intents: dict[str, _Intent] = {}

    def record(self, judged: list[Judged], intents: list[IntentOutcome]) -> None:
        for j in judged:
            rr_m = 1.0 / j.model_rank if j.model_rank else 0.0
            rr_b = 1.0 / j.baseline_rank if j.baseline_rank else 0.0
            self.judged.labels(j.version).inc()
            for method, rr in (("model", rr_m), ("baseline", rr_b)):
                self.rr_sum.labels(j.version, method).inc(rr)
                if rr:
                    self.hits.labels(j.version, method).inc()
            self.windows.setdefault(j.version, _Window()).add(j.target_ts, rr_m, int(rr_m > 0), rr_b, int(rr_b > 0))
        for o in intents:
            stats = self.intents.setdefault(o.version, _Intent())
            b = min(int(o.probability * INTENT_BINS), INTENT_BINS - 1)
            stats.n[b] += 1
            stats.bought[b] += o.bought
            stats.p_sum[b] += o.probability
            stats.brier_sum += (o.probability - o.bought) ** 2
            self.intent_judged.labels(o.version).inc()
            self.intent_brier_sum.labels(o.version).inc((o.probability - o.bought) ** 2)
            self.intent_bin.labels(o.version, str(b)).inc()
            if o.bought:
                self.intent_bin_bought.labels(o.version, str(b)).inc()

    def publish(self) -> dict[str, dict[str, float]]:
        """Slide every window to the watermark, set the gauges, and return the numbers."""
        out: dict[str, dict[str, float]] = {}
        for version, w in self.windows.items():
            w.evict_before(w.watermark - self.window_ms)
            n = len(w.entries)
            row = {  # running sums: max() keeps float residue of evicted entries from showing as -0.0
                "events": float(n),
                "mrr_model": max(0.0, w.rr_model / n) if n else 0.0,
                "mrr_baseline": max(0.0, w.rr_baseline / n) if n else 0.0,
                "recall_model": w.hit_model / n if n else 0.0,
                "recall_baseline": w.hit_baseline / n if n else 0.0,
            }
            self.window_events.labels(version).set(n)
            for method in METHODS:
                self.window_mrr.labels(version, method).set(row[f"mrr_{method}"])
                self.window_recall.labels(version, method).set(row[f"recall_{method}"])
            out[version] = row
        for version, stats in self.intents.items():
            ece = stats.ece()
            self.intent_ece.labels(version).set(ece)
            total = sum(stats.n)
            out.setdefault(version, {}).update(
                {"intent_events": float(total), "intent_ece": ece, "intent_brier": stats.brier_sum / max(total, 1)}
            )
        return out
