"""The offline inputs of a report, each read from a path the caller gives (never a default):

* a review CSV (``cat,label,review``, label 0 = negative) -> :class:`ReviewCorpus`;
* a JSON-lines file of shopper events (the ``Event`` contract, e.g. ``demandstream simulate
  --output FILE``) -> observed demand per category and bucket, unmet search needs (a search
  with no cart/purchase in its session) and timed reviews for pain-point trends;
* a query list (``qid<TAB>query``) -> the most searched terms. A query list alone has no
  sessions, so it can never yield unmet needs: the report says so instead of simulating them.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from insights.exceptions import DataFileError
from insights.painpoints import ReviewCorpus
from insights.text import ProductSegmenter
from insights.unmet import SessionTracker, load_queries
from stream.contracts import Event

log = logging.getLogger(__name__)

DEMAND_TYPES = frozenset({"view", "cart", "purchase", "favorite", "favourite"})


def load_review_csv(path: Path, categories: Iterable[str] | None = None) -> Iterator[tuple[str, bool, str]]:
    """(category, negative, review) rows of a ``cat,label,review`` CSV (label 0 = negative)."""
    wanted = set(categories) if categories else None
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise DataFileError(f"cannot read review CSV {path}: {exc}") from exc
    with handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"cat", "label", "review"} <= set(reader.fieldnames):
            raise DataFileError(f"{path} needs the columns cat,label,review")
        for row in reader:
            cat, label, review = row["cat"], row["label"], row["review"]
            if (wanted is None or cat in wanted) and review and label in {"0", "1"}:
                yield cat, label == "0", review


def corpus_from_csv(
    path: Path, categories: Iterable[str] | None = None, corpus: ReviewCorpus | None = None
) -> ReviewCorpus:
    """Read and count a review CSV (all categories by default: they form the prior)."""
    corpus = corpus or ReviewCorpus()
    n = 0
    for cat, negative, review in load_review_csv(path, categories):
        corpus.add(cat, review, negative)
        n += 1
    log.info("reviews counted", extra={"reviews": n, "categories": len(corpus.categories)})
    return corpus


@dataclass(slots=True)
class EventsSummary:
    """What a JSON-lines events file holds, folded like the stream job folds the topic."""

    events: int = 0
    sessions_with_search: int = 0
    reviews: int = 0
    demand: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    searches: Counter[str] = field(default_factory=Counter)
    conversions: Counter[str] = field(default_factory=Counter)


def read_events(path: Path) -> list[Event]:
    """All events of a JSON-lines file, in time order; a bad line is an error naming it."""
    decoder = msgspec.json.Decoder(Event)
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise DataFileError(f"cannot read events file {path}: {exc}") from exc
    events: list[Event] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            events.append(decoder.decode(line))
        except msgspec.DecodeError as exc:
            raise DataFileError(f"{path}:{number}: not a valid event ({exc})") from exc
    events.sort(key=lambda e: e.ts)
    return events


def fold_events(
    events: Iterable[Event],
    bucket_s: int,
    corpus: ReviewCorpus | None = None,
    segmenter: ProductSegmenter | None = None,
) -> EventsSummary:
    """Demand per category and bucket, search/conversion counts per term, timed reviews."""
    out = EventsSummary()
    tracker = SessionTracker(segmenter)
    search_users: set[tuple[str, int]] = set()
    for ev in events:
        out.events += 1
        if ev.type in DEMAND_TYPES and ev.category_id:
            out.demand[ev.category_id][ev.ts // 1000 // bucket_s] += 1
        for counter, term, ts in tracker.observe(ev.user_id, ev.ts, ev.type, ev.query):
            (out.searches if counter == "search" else out.conversions)[term] += 1
            search_users.add((ev.user_id, ts))
        rated = ev.type == "review" and ev.category_id and ev.text and ev.rating and ev.rating != 3
        if rated and corpus is not None and ev.category_id and ev.text and ev.rating:
            corpus.add(ev.category_id, ev.text, ev.rating <= 2, ts_ms=ev.ts)  # 3 stars: neutral
            out.reviews += 1
    out.sessions_with_search = len(search_users)
    return out


def top_queried_terms(
    path: Path, top: int = 20, segmenter: ProductSegmenter | None = None
) -> tuple[int, list[tuple[str, int]]]:
    """(number of queries, the ``top`` terms by the queries that contain them)."""
    seg = segmenter or ProductSegmenter.default()
    queries = load_queries(path)
    counts: Counter[str] = Counter()
    for q in queries:
        counts.update(set(seg.terms(q)))
    return len(queries), counts.most_common(top)
