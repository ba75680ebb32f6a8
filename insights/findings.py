"""The findings a report or the dashboard shows, computed from the Redis aggregates and/or the
offline inputs, as plain structs that encode to JSON.

Rising demand compares the newest ``recent`` buckets with the ``baseline`` buckets before them
(:func:`insights.stats.rate_change`); categories are ranked by the lower confidence bound of their
lift, so a big jump on tiny numbers ranks below a steady, certain rise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from insights.names import Names
from insights.painpoints import PainPoint, ReviewCorpus
from insights.stats import rate_change
from insights.store import WindowData
from insights.unmet import UnmetNeed, rank_unmet


@dataclass(frozen=True, slots=True)
class RisingCategory:
    category: str
    name: str
    recent: float
    baseline: float
    lift: float
    lift_lower: float
    z: float
    p_value: float
    sentence: str  # the lift in one plain sentence


@dataclass(frozen=True, slots=True)
class CategoryDemand:
    category: str
    name: str
    series: list[float]  # demand per bucket (of ``Findings.buckets``), oldest first
    mean_intent: float | None  # score-weighted purchase intent over the window (predictions only)


@dataclass(frozen=True, slots=True)
class QueryTerm:
    term: str
    queries: int


@dataclass(frozen=True, slots=True)
class Source:
    """Where one part of the findings came from, with its counts, in words."""

    part: str  # demand, unmet, pain_points, queries, names
    detail: str


@dataclass(slots=True)
class Findings:
    generated_at: int
    bucket_s: int
    buckets: list[int] = field(default_factory=list)
    demand: list[CategoryDemand] = field(default_factory=list)
    rising: list[RisingCategory] = field(default_factory=list)
    unmet: list[UnmetNeed] = field(default_factory=list)
    pain_points: dict[str, list[PainPoint]] = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)
    demand_kind: str = ""  # "predicted" (model, Redis) or "observed" (shopper events file)
    top_queries: list[QueryTerm] = field(default_factory=list)
    category_names: dict[str, str] = field(default_factory=dict)  # pain-point category -> name

    def to_json(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(self), indent=2)


def lift_sentence(name: str, lift: float, lower: float, period: str) -> str:
    """The lift in words.

    >>> lift_sentence("earphones", 1.62, 1.31, "hour")
    'Demand for earphones this hour is 1.6x its usual share; at least 1.3x with 95% confidence.'
    >>> lift_sentence("tablets", 1.19, 1.027, "day").split("; ")[1]
    'at least 1.03x with 95% confidence.'
    """
    # Near 1 one decimal would read "at least 1.0x", i.e. no rise: show two there.
    low = f"{lower:.2f}" if lower < 1.1 else f"{lower:.1f}"
    return f"Demand for {name} this {period} is {lift:.1f}x its usual share; at least {low}x with 95% confidence."


def period_name(bucket_s: int) -> str:
    """The bucket length in words.

    >>> period_name(3600), period_name(86400), period_name(900)
    ('hour', 'day', '15-minute period')
    """
    named = {60: "minute", 3600: "hour", 86_400: "day", 604_800: "week"}
    if bucket_s in named:
        return named[bucket_s]
    return f"{bucket_s // 60}-minute period" if bucket_s % 60 == 0 else f"{bucket_s}-second period"


def rank_rising(
    series: dict[str, list[float]],
    recent: int,
    min_recent: float = 5.0,
    top: int = 20,
    names: Names | None = None,
    period: str = "hour",
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
            name = names.category(cat) if names else cat
            sentence = lift_sentence(name, ch.lift, ch.lift_lower, period)
            out.append(
                RisingCategory(cat, name, ch.recent, ch.baseline, ch.lift, ch.lift_lower, ch.z, ch.p_value, sentence)
            )
    out.sort(key=lambda r: (-r.lift_lower, r.category))
    return out[:top]


def demand_table(
    demand: dict[str, list[float]],
    intent: dict[str, list[float]] | None = None,
    names: Names | None = None,
    top: int = 15,
) -> list[CategoryDemand]:
    """The ``top`` categories by demand over the window, with their series and names."""
    rows = []
    for cat, series in demand.items():
        total = sum(series)
        mean_intent = sum(intent.get(cat, [])) / total if intent is not None and total else None
        rows.append(CategoryDemand(cat, names.category(cat) if names else cat, series, mean_intent))
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


def live_findings(
    window: WindowData, bucket_s: int, now_ms: int, recent: int = 1, top: int = 20, names: Names | None = None
) -> Findings:
    """Findings from the stream aggregates only."""
    names = names or Names()
    baseline_ok = len(window.buckets) > recent
    period = period_name(bucket_s)
    rising = rank_rising(window.demand, recent, top=top, names=names, period=period) if baseline_ok else []
    corpus = stream_corpus(window)
    searches = int(sum(window.searches.values()))
    pain = {c: corpus.pain_points(c, min_negative=2) for c in corpus.categories}
    return Findings(
        generated_at=now_ms,
        bucket_s=bucket_s,
        buckets=window.buckets,
        demand=demand_table(window.demand, window.intent, names),
        rising=rising,
        unmet=rank_unmet(window.searches, window.conversions, top=top),
        pain_points=pain,
        demand_kind="predicted",
        category_names={c: names.category(c) for c in pain},
        sources=[
            Source("demand", f"model predictions in Redis: {window.predictions} in {len(window.buckets)} {period}s"),
            Source("unmet", f"the live events stream (Redis): {searches} session searches"),
        ],
    )
