"""``demandstream insights report``: findings from the offline inputs (review CSV, query list +
simulated sessions) and, optionally, the live Redis aggregates, written as ``report.html``
(inline-SVG charts) and ``findings.json`` (the same findings, machine-readable).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from insights.findings import Findings, live_findings
from insights.painpoints import corpus_from_csv
from insights.sessions import simulate_sessions
from insights.store import InsightsStore
from insights.svg import bar_chart
from insights.unmet import SessionTracker, load_queries, rank_unmet

log = logging.getLogger(__name__)

# The repository's sibling shared/ folder holds the real data sets (never copied into the repo).
DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DEFAULT_REVIEWS = DATA_DIR / "online_shopping_10_cats" / "online_shopping_10_cats.csv"
DEFAULT_QUERIES = DATA_DIR / "multicpr_ecom_queries" / "train.query.txt"
FOCUS_CATEGORIES = ("手机", "平板", "计算机", "热水器")


def offline_findings(
    reviews: Path | None,
    categories: Sequence[str] | None,
    queries: Path | None,
    sessions: int = 5000,
    seed: int = 7,
    top: int = 5,
) -> Findings:
    """Pain points from a review CSV and unmet needs from real queries in simulated sessions."""
    findings = Findings(generated_at=int(time.time() * 1000), bucket_s=0)
    if reviews is not None:
        corpus = corpus_from_csv(reviews, categories or None)
        findings.pain_points = {c: corpus.pain_points(c, top=top) for c in corpus.categories}
        findings.sources.append(f"reviews:{reviews.name}")
    if queries is not None:
        sim = simulate_sessions(load_queries(queries), sessions=sessions, seed=seed)
        tracker, searched, converted = SessionTracker(), Counter[str](), Counter[str]()
        for ev in sim.events:
            for counter, term, _ in tracker.observe(ev.user_id, ev.ts, ev.type, ev.query):
                (searched if counter == "search" else converted)[term] += 1
        findings.unmet = rank_unmet(searched, converted, top=20)
        findings.sources.append(f"queries:{queries.name}+{sessions} simulated sessions")
    return findings


async def add_live(findings: Findings, store: InsightsStore, window: int) -> Findings:
    """Merge the Redis aggregates of the newest ``window`` buckets into ``findings``."""
    latest = await store.latest_bucket()
    if latest is None:
        log.warning("no stream aggregates in Redis yet")
        return findings
    live = live_findings(await store.read_window(latest, window), store.bucket_s, findings.generated_at)
    findings.bucket_s, findings.buckets = live.bucket_s, live.buckets
    findings.demand, findings.rising = live.demand, live.rising
    findings.unmet = findings.unmet or live.unmet
    for cat, points in live.pain_points.items():
        findings.pain_points.setdefault(cat, points)
    findings.sources.append("redis")
    return findings


def render_html(findings: Findings) -> str:
    env = jinja2.Environment(loader=jinja2.PackageLoader("insights", "templates"), autoescape=True)
    charts = {
        "demand": bar_chart(
            [d.category for d in findings.demand],
            [sum(d.series) for d in findings.demand],
            "Expected demand (sum of predicted scores)",
        ),
        "unmet": bar_chart(
            [u.term for u in findings.unmet],
            [u.missed_conversions for u in findings.unmet],
            "Missed conversions",
        ),
        "pain": {
            cat: bar_chart([p.aspect for p in pts], [p.z for p in pts], f"{cat}: pain points (z)")
            for cat, pts in findings.pain_points.items()
        },
    }
    generated = datetime.fromtimestamp(findings.generated_at / 1000, UTC).isoformat(timespec="seconds")
    return env.get_template("report.html").render(f=findings, charts=charts, generated=generated)


def write_report(findings: Findings, out: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``findings.json`` into ``out`` (created if missing)."""
    out.mkdir(parents=True, exist_ok=True)
    html, data = out / "report.html", out / "findings.json"
    html.write_text(render_html(findings), encoding="utf-8")
    data.write_bytes(findings.to_json())
    log.info("report written", extra={"html": str(html), "json": str(data)})
    return html, data
