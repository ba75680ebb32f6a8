"""How much of the stream the serving model knows: the share of events whose category or item is
outside its vocabularies.

A model trained on one catalogue and fed another (Taobao's categories, then ``simulate``'s)
predicts from padding: every user gets the same answer, and nothing else says so. The worker
counts, per batch, the events that name a category (an item) and those the model does not know,
exports both and the share over the last events, and warns while most categories are unknown.

>>> from prometheus_client import CollectorRegistry
>>> from stream.worker.metrics import WorkerMetrics
>>> watch = VocabularyWatch(WorkerMetrics(CollectorRegistry()), window=4, warn_share=0.5)
>>> watch.observe(["c1", "zz", "zz", None], ["i1", None, "i9", None], {"c1"}, {"i1"})
>>> round(watch.share("category"), 2), round(watch.share("item"), 2)
(0.67, 0.5)
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Container, Sequence

from stream.worker.metrics import WorkerMetrics

logger = logging.getLogger(__name__)

FIELDS = ("category", "item")
_WARN_EVERY_S = 60.0


class VocabularyWatch:
    """Counts unknown categories/items and warns while the recent share of unknown categories is high."""

    def __init__(self, metrics: WorkerMetrics, *, window: int = 2000, warn_share: float = 0.5) -> None:
        self._metrics = metrics
        self._warn_share = warn_share
        self._window = window
        # Per field, the last ``window`` checked events: True where the model does not know it.
        self._recent: dict[str, deque[bool]] = {field: deque(maxlen=window) for field in FIELDS}
        self._unknown_recent = dict.fromkeys(FIELDS, 0)
        self._last_warning = -_WARN_EVERY_S

    def share(self, field: str) -> float:
        """Share of unknown values among the last checked events that had ``field`` (0 when none)."""
        recent = self._recent[field]
        return self._unknown_recent[field] / len(recent) if recent else 0.0

    def observe(
        self,
        categories: Sequence[str | None],
        items: Sequence[str | None],
        known_categories: Container[str],
        known_items: Container[str],
    ) -> None:
        """Count one batch's category and item ids (``None``: the event has none) against the model."""
        for field, values, known in (("category", categories, known_categories), ("item", items, known_items)):
            unknown = [value not in known for value in values if value is not None]
            if not unknown:
                continue
            recent = self._recent[field]
            for flag in unknown:
                if len(recent) == recent.maxlen and recent[0]:
                    self._unknown_recent[field] -= 1
                recent.append(flag)
                self._unknown_recent[field] += flag
            self._metrics.vocab_checked.labels(field).inc(len(unknown))
            self._metrics.vocab_unknown.labels(field).inc(sum(unknown))
            self._metrics.vocab_unknown_share.labels(field).set(self.share(field))
        self._maybe_warn()

    def _maybe_warn(self) -> None:
        recent = self._recent["category"]
        share = self.share("category")
        # Only over a full window: a few unknown categories at start-up say nothing yet.
        if len(recent) < self._window or share < self._warn_share:
            return
        now = time.monotonic()
        if now - self._last_warning < _WARN_EVERY_S:
            return
        self._last_warning = now
        logger.warning(
            "%.0f%% of the last %d events name a category the model does not know: its predictions for them "
            "fall back to what it learnt without it; retrain on this stream (demandstream train --format kafka)",
            share * 100,
            len(recent),
        )
