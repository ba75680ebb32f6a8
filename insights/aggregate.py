"""Turns decoded predictions and events into one :class:`~insights.store.BatchDelta` per batch.

* prediction -> expected demand per (bucket, category) = sum of its top-k scores, and the
  score-weighted purchase intent (intent / demand is the category's mean intent);
* search/cart/purchase -> per-term searches and same-session conversions
  (:class:`~insights.unmet.SessionTracker`), dated by the search;
* review with a category and a rating -> aspect counts of negative (1-2 stars) or positive
  (4-5 stars) reviews; 3 stars is neutral and skipped. Negative ones also feed example quotes.
"""

from __future__ import annotations

from insights.store import REVIEWS_MEMBER, BatchDelta
from insights.text import ProductSegmenter
from insights.unmet import SessionTracker
from stream.contracts import Event, Prediction

_EXAMPLE_MAX_CHARS = 120


class Aggregator:
    """Stateful (open search sessions) accumulator of batch deltas."""

    def __init__(self, bucket_s: int, segmenter: ProductSegmenter | None = None) -> None:
        self._bucket_ms = bucket_s * 1000
        self._seg = segmenter or ProductSegmenter.default()
        self.sessions = SessionTracker(self._seg)

    def bucket(self, ts_ms: int) -> int:
        return ts_ms // self._bucket_ms

    def add_prediction(self, delta: BatchDelta, prediction: Prediction) -> None:
        b = self.bucket(prediction.event_ts)
        delta.counts[(b, "predictions")] += 1
        for entry in prediction.demand:
            delta.demand[(b, entry.category_id)] += entry.score
            delta.intent[(b, entry.category_id)] += entry.score * prediction.purchase_intent

    def add_event(self, delta: BatchDelta, event: Event) -> None:
        if event.type == "review":
            self._add_review(delta, event)
            return
        for counter, term, ts in self.sessions.observe(event.user_id, event.ts, event.type, event.query):
            target = delta.searches if counter == "search" else delta.conversions
            target[(self.bucket(ts), term)] += 1

    def _add_review(self, delta: BatchDelta, event: Event) -> None:
        if not event.text or event.rating is None or event.rating == 3 or not event.category_id:
            return
        negative = event.rating <= 2
        b, cat = self.bucket(event.ts), event.category_id
        delta.review_words[(b, cat, negative, REVIEWS_MEMBER)] += 1
        aspects = {w.word for c in self._seg.clauses(event.text) for w in c if w.is_aspect}
        for word in aspects:
            delta.review_words[(b, cat, negative, word)] += 1
        if negative and aspects:
            delta.review_examples[cat].append(event.text.strip()[:_EXAMPLE_MAX_CHARS])
