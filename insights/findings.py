"""The findings a report or the dashboard shows, computed from the Redis aggregates and/or the
offline inputs, as plain structs that encode to JSON.

Rising demand compares the newest ``recent`` buckets with the ``baseline`` buckets before them
(:func:`insights.stats.rate_change`); categories are ranked by the lower confidence bound of their
lift, so a big jump on tiny numbers ranks below a steady, certain rise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from insights.painpoints import PainPoint, ReviewCorpus
from insights.stats import rate_change
from insights.store import WindowData
from insights.unmet import UnmetNeed, rank_unmet


@dataclass(frozen=True, slots=True)
class RisingCategory:
    category: str
    recent: float
    baseline: float
    lift: float
    lift_lower: float
    z: float
    p_value: float


@dataclass(frozen=True, slots=True)
class CategoryDemand:
    category: str
    series: list[float]  # expected demand per bucket, oldest first
    mean_intent: float  # score-weighted purchase intent over the window


@dataclass(slots=True)
class Findings:
    generated_at: int
    bucket_s: int
    buckets: list[int] = field(default_factory=list)
    demand: list[CategoryDemand] = field(default_factory=list)
    rising: list[RisingCategory] = field(default_factory=list)
    unmet: list[UnmetNeed] = field(default_factory=list)
    pain_points: dict[str, list[PainPoint]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(self), indent=2)


def rank_rising(
    series: dict[str, list[float]], recent: int, min_recent: float = 5.0, top: int = 20
) -> list[RisingCategory]:
    """Categories whose share of demand in the last ``recent`` points beats the points before.

    >>> flat, up = [10.0] * 6, [10.0] * 4 + [30.0, 30.0]
    >>> [r.category for r in rank_rising({"a": flat, "b": up, "c": flat}, recent=2)]
    ['b']
    """
    recent_sum = {c: sum(v[-recent:]) for c, v in series.items()}
    base_sum = {c: sum(v[:-recent]) for c, v in series.items()}
    recent_total, base_total = sum(recent_sum.values()), sum(base_sum.values())
    if recent_total <= 0 or base_total <= 0:
        return []
    out: list[RisingCategory] = []
    for cat in series:
        if recent_sum[cat] < min_recent:
            continue
        ch = rate_change(recent_sum[cat], base_sum[cat], recent_total, base_total)
        if ch.lift_lower > 1.0:
            out.append(RisingCategory(cat, ch.recent, ch.baseline, ch.lift, ch.lift_lower, ch.z, ch.p_value))
    out.sort(key=lambda r: (-r.lift_lower, r.category))
    return out[:top]


def demand_table(window: WindowData, top: int = 15) -> list[CategoryDemand]:
    """The ``top`` categories by demand over the window, with their series."""
    rows = []
    for cat, series in window.demand.items():
        total = sum(series)
        intent = sum(window.intent.get(cat, []))
        rows.append(CategoryDemand(cat, series, intent / total if total else 0.0))
    rows.sort(key=lambda r: (-sum(r.series), r.category))
    return rows[:top]


def stream_corpus(window: WindowData, corpus: ReviewCorpus | None = None) -> ReviewCorpus:
    """A review corpus of the stream's aggregates (merged into ``corpus`` when given)."""
    corpus = corpus or ReviewCorpus()
    for (cat, negative), words in window.review_words.items():
        corpus.add_counts(
            cat,
            negative,
            window.review_counts.get((cat, negative), 0),
            dict(words),
            window.review_examples.get(cat, []) if negative else (),
        )
    return corpus


def live_findings(window: WindowData, bucket_s: int, now_ms: int, recent: int = 1, top: int = 20) -> Findings:
    """Findings from the stream aggregates only."""
    baseline_ok = len(window.buckets) > recent
    rising = rank_rising(window.demand, recent, top=top) if baseline_ok else []
    corpus = stream_corpus(window)
    return Findings(
        generated_at=now_ms,
        bucket_s=bucket_s,
        buckets=window.buckets,
        demand=demand_table(window),
        rising=rising,
        unmet=rank_unmet(window.searches, window.conversions, top=top),
        pain_points={c: corpus.pain_points(c, min_negative=2) for c in corpus.categories},
        sources=["redis"],
    )
