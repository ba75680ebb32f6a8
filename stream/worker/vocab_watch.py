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
    """Counts unknown categories/items and warns while the recent share of unknown categories is high.

    "Recent" is the last whole batches that hold at least ``window`` checked events: per batch
    only two counts are kept, so the hot path pays one membership test per id and nothing more.
    """

    def __init__(self, metrics: WorkerMetrics, *, window: int = 2000, warn_share: float = 0.5) -> None:
        self._metrics = metrics
        self._warn_share = warn_share
        self._window = window
        # Per field: (checked, unknown) of each recent batch, and their sums.
        self._batches: dict[str, deque[tuple[int, int]]] = {field: deque() for field in FIELDS}
        self._checked = dict.fromkeys(FIELDS, 0)
        self._unknown = dict.fromkeys(FIELDS, 0)
        self._last_warning = -_WARN_EVERY_S

    def share(self, field: str) -> float:
        """Share of unknown values among the recent events that had ``field`` (0 when none)."""
        checked = self._checked[field]
        return self._unknown[field] / checked if checked else 0.0

    def observe(
        self,
        categories: Sequence[str | None],
        items: Sequence[str | None],
        known_categories: Container[str],
        known_items: Container[str],
    ) -> None:
        """Count one batch's category and item ids (``None``: the event has none) against the model."""
        for field, values, known in (("category", categories, known_categories), ("item", items, known_items)):
            present = [value for value in values if value is not None]
            if not present:
                continue
            unknown = len(present) - sum(map(known.__contains__, present))  # no Python-level loop
            batches = self._batches[field]
            batches.append((len(present), unknown))
            self._checked[field] += len(present)
            self._unknown[field] += unknown
            while self._checked[field] - batches[0][0] >= self._window:  # older batches still leave a window
                old_checked, old_unknown = batches.popleft()
                self._checked[field] -= old_checked
                self._unknown[field] -= old_unknown
            self._metrics.vocab_checked.labels(field).inc(len(present))
            self._metrics.vocab_unknown.labels(field).inc(unknown)
            self._metrics.vocab_unknown_share.labels(field).set(self.share(field))
        self._maybe_warn()

    def _maybe_warn(self) -> None:
        checked = self._checked["category"]
        share = self.share("category")
        # Only over a full window: a few unknown categories at start-up say nothing yet.
        if checked < self._window or share < self._warn_share:
            return
        now = time.monotonic()
        if now - self._last_warning < _WARN_EVERY_S:
            return
        self._last_warning = now
        logger.warning(
            "%.0f%% of the last %d events name a category the model does not know: its predictions for them "
            "fall back to what it learnt without it; retrain on this stream (demandstream train --format kafka)",
            share * 100,
            checked,
        )
