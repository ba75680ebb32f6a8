"""``demandstream insights report``: findings from the inputs the caller names (review CSV,
JSON-lines events file, query list, names file) and, optionally, the live Redis aggregates,
written as one self-contained ``report.html`` (charts inline as SVG), ``findings.json`` (the
same findings, machine-readable) and one CSV per table.

Nothing here reads a default data path and nothing is simulated: each section says where its
numbers came from, with counts, or that it has no source.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from insights import charts
from insights.findings import (
    Findings,
    QueryTerm,
    Source,
    demand_table,
    live_findings,
    period_name,
    rank_rising,
)
from insights.names import Names
from insights.painpoints import MIN_Z, ReviewCorpus
from insights.sources import corpus_from_csv, fold_events, read_events, top_queried_terms
from insights.store import InsightsStore
from insights.unmet import rank_unmet

log = logging.getLogger(__name__)

CHART_CATEGORIES = 9  # small multiples drawn in the demand chart


@dataclass(frozen=True, slots=True)
class ReportInputs:
    """The offline inputs, each optional; a missing one leaves its section saying so."""

    reviews: Path | None = None
    review_categories: Sequence[str] = ()
    events: Path | None = None
    queries: Path | None = None
    names: Names = field(default_factory=Names)
    bucket_s: int = 3600
    top: int = 5


def offline_findings(inputs: ReportInputs) -> Findings:
    """Pain points (reviews, plus timed reviews of the events file), demand and unmet needs
    observed in the events file, and the most searched terms of a query list."""
    names = inputs.names
    findings = Findings(generated_at=int(time.time() * 1000), bucket_s=inputs.bucket_s)
    corpus = ReviewCorpus()
    for cat in names.categories:
        corpus.lexicon.add_category(cat, names.own_words.get(cat, ()), names.brands.get(cat, ()))
    review_sources: list[str] = []
    if inputs.reviews is not None:
        corpus_from_csv(inputs.reviews, inputs.review_categories or None, corpus)
        n = sum(corpus.review_count(c, neg) for c in corpus.categories for neg in (True, False))
        review_sources.append(f"{n} labelled reviews of {inputs.reviews.name}")
    if inputs.events is not None:
        events = read_events(inputs.events)
        folded = fold_events(events, inputs.bucket_s, corpus)
        if folded.demand:
            first = min(min(c) for c in folded.demand.values())
            last = max(max(c) for c in folded.demand.values())
            findings.buckets = list(range(first, last + 1))
            series = {cat: [float(c[b]) for b in findings.buckets] for cat, c in folded.demand.items()}
            findings.demand = demand_table(series, None, names)
            findings.rising = rank_rising(series, 1, names=names, period=period_name(inputs.bucket_s))
            findings.demand_kind = "observed"
            findings.sources.append(
                Source("demand", f"views, carts and purchases in {inputs.events.name}: {folded.events} events")
            )
        findings.unmet = rank_unmet(folded.searches, folded.conversions, top=20)
        findings.sources.append(
            Source(
                "unmet",
                f"sessions of {inputs.events.name}: {folded.sessions_with_search} sessions with a search, "
                f"{sum(folded.searches.values())} term searches, {sum(folded.conversions.values())} followed "
                "by a cart or purchase",
            )
        )
        if folded.reviews:
            review_sources.append(f"{folded.reviews} rated reviews with times in {inputs.events.name}")
    if review_sources:
        findings.pain_points = {c: corpus.pain_points(c, top=inputs.top) for c in corpus.categories}
        findings.category_names = {c: names.category(c) for c in findings.pain_points}
        findings.sources.append(Source("pain_points", "; ".join(review_sources)))
    if inputs.queries is not None:
        n_queries, terms = top_queried_terms(inputs.queries)
        findings.top_queries = [QueryTerm(t, n) for t, n in terms]
        findings.sources.append(
            Source("queries", f"{n_queries} queries of {inputs.queries.name} (no sessions: not used for unmet needs)")
        )
    if names.categories:
        findings.sources.append(Source("names", names.source))
    return findings


async def add_live(findings: Findings, store: InsightsStore, window: int, names: Names) -> Findings:
    """Replace demand, rising and unmet needs with the Redis aggregates of the newest buckets."""
    latest = await store.latest_bucket()
    if latest is None:
        log.warning("no stream aggregates in Redis yet")
        findings.sources.append(Source("demand", "Redis: no stream aggregates yet"))
        return findings
    live = live_findings(await store.read_window(latest, window), store.bucket_s, findings.generated_at, names=names)
    findings.bucket_s, findings.buckets = live.bucket_s, live.buckets
    findings.demand, findings.rising, findings.demand_kind = live.demand, live.rising, live.demand_kind
    kept = [s for s in findings.sources if s.part not in {"demand", "unmet"}]
    findings.unmet = live.unmet
    findings.sources = kept + live.sources
    for cat, points in live.pain_points.items():
        findings.pain_points.setdefault(cat, points)
        findings.category_names.setdefault(cat, names.category(cat))
    return findings


def render_charts(f: Findings) -> dict[str, str]:
    out: dict[str, str] = {}
    if f.demand and f.buckets:
        shown = f.demand[:CHART_CATEGORIES]
        rising = frozenset(r.name for r in f.rising)
        out["demand"] = charts.series_chart(
            {d.name: d.series for d in shown}, f.buckets, f.bucket_s, "Demand per category over time", rising
        )
    if f.rising and f.buckets:
        by_cat = {d.category: d.series for d in f.demand}
        series = {r.name: by_cat[r.category] for r in f.rising[:CHART_CATEGORIES] if r.category in by_cat}
        if series:
            out["rising"] = charts.series_chart(series, f.buckets, f.bucket_s, "Rising categories", frozenset(series))
    if f.unmet:
        out["unmet"] = charts.bar_chart(
            [u.term for u in f.unmet[:15]], [u.missed_conversions for u in f.unmet[:15]], "Missed conversions"
        )
    return out


INTENT_MIN_SPREAD = 0.05  # intent that varies less than this across categories separates nothing


def intent_note(f: Findings) -> str:
    """A sentence instead of an intent column when intent is about the same for every category."""
    values = [d.mean_intent for d in f.demand if d.mean_intent is not None]
    if not values or max(values) - min(values) >= INTENT_MIN_SPREAD:
        return ""
    return (
        f"Purchase intent is about {min(values):.2f} for every category: the model does not tell "
        "categories apart on intent, so it is not shown per row."
    )


def render_html(findings: Findings) -> str:
    env = jinja2.Environment(loader=jinja2.PackageLoader("insights", "templates"), autoescape=True)
    generated = datetime.fromtimestamp(findings.generated_at / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return env.get_template("report.html").render(
        f=findings,
        charts=render_charts(findings),
        generated=generated,
        period=period_name(findings.bucket_s),
        bucket_labels=charts.bucket_labels(findings.buckets, findings.bucket_s),
        sources={s.part: s.detail for s in findings.sources},
        min_z=MIN_Z,
        intent_note=intent_note(findings),
    )


def table_rows(f: Findings) -> dict[str, tuple[list[str], list[list[object]]]]:
    """Every table of the report as (header, rows), for the CSV export."""
    return {
        "demand": (
            ["name", "category_id", "total", "mean_intent", "series"],
            [
                [d.name, d.category, sum(d.series), d.mean_intent, " ".join(f"{v:g}" for v in d.series)]
                for d in f.demand
            ],
        ),
        "rising": (
            ["name", "category_id", "recent", "baseline", "lift", "lift_lower_95", "z", "p_value", "sentence"],
            [
                [r.name, r.category, r.recent, r.baseline, r.lift, r.lift_lower, r.z, r.p_value, r.sentence]
                for r in f.rising
            ],
        ),
        "unmet": (
            ["term", "searches", "conversions", "conversion_rate", "missed_conversions"],
            [[u.term, u.searches, u.conversions, u.conversion_rate, u.missed_conversions] for u in f.unmet],
        ),
        "pain_points": (
            [
                "category",
                "category_id",
                "aspect",
                "phrase",
                "negative_share",
                "positive_share",
                "negative_reviews",
                "z",
                "rising",
                "trend_lift",
                "example_1",
                "example_2",
                "suggestion",
            ],
            [
                [
                    f.category_names.get(c, c),
                    c,
                    p.aspect,
                    p.phrase or "",
                    p.negative_share,
                    p.positive_share,
                    p.negative_reviews,
                    p.z,
                    bool(p.trend and p.trend.rising),
                    p.trend.lift if p.trend else "",
                    *[*p.examples, "", ""][:2],
                    p.suggestion,
                ]
                for c, points in f.pain_points.items()
                for p in points
            ],
        ),
        "top_queries": (["term", "queries"], [[q.term, q.queries] for q in f.top_queries]),
    }


def write_report(findings: Findings, out: Path) -> list[Path]:
    """Write ``report.html``, ``findings.json`` and one CSV per table into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    html, data = out / "report.html", out / "findings.json"
    html.write_text(render_html(findings), encoding="utf-8")
    data.write_bytes(findings.to_json())
    written = [html, data]
    for name, (header, rows) in table_rows(findings).items():
        path = out / f"{name}.csv"
        with path.open("w", encoding="utf-8-sig", newline="") as handle:  # BOM: spreadsheets read UTF-8
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        written.append(path)
    log.info("report written", extra={"out": str(out), "files": len(written)})
    return written
