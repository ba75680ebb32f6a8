"""Unmet search needs: query terms searched often but rarely followed by a cart or purchase in
the same session — candidates for products the catalogue lacks.

A session is a user's run of events with gaps shorter than ``session_gap_ms``. Each term counts
once per session as a search, and once more as a conversion if a cart/purchase follows in that
session. :class:`SessionTracker` keeps the open sessions in process memory, bounded by an LRU
cap: the events topic is keyed by user, so one consumer sees all of a user's events in order.

>>> tracker = SessionTracker()
>>> tracker.observe("u1", 0, "search", "蓝牙耳机 降噪")
[('search', '蓝牙耳机', 0), ('search', '降噪', 0)]
>>> tracker.observe("u1", 60_000, "cart", None)
[('conv', '蓝牙耳机', 0), ('conv', '降噪', 0)]
>>> rank_unmet({"耳机": 100, "手办": 100}, {"耳机": 40, "手办": 1}, top=5)[0].term
'手办'
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from insights.exceptions import DataFileError
from insights.stats import conversion_gap
from insights.text import ProductSegmenter

SESSION_GAP_MS = 30 * 60 * 1000  # the usual web-analytics session timeout
CONVERTING_TYPES = frozenset({"cart", "purchase"})

Increment = tuple[Literal["search", "conv"], str, int]  # (counter, term, search ts in ms)


@dataclass(slots=True)
class _Session:
    last_ts: int
    pending: dict[str, int] = field(default_factory=dict)  # term -> ts of its first search
    converted: set[str] = field(default_factory=set)


class SessionTracker:
    """Turns a user-ordered event stream into per-term search and conversion increments."""

    def __init__(
        self,
        segmenter: ProductSegmenter | None = None,
        session_gap_ms: int = SESSION_GAP_MS,
        max_sessions: int = 200_000,
    ) -> None:
        self._seg = segmenter or ProductSegmenter.default()
        self._gap = session_gap_ms
        self._max = max_sessions
        self._sessions: OrderedDict[str, _Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def _session(self, user: str, ts: int) -> _Session:
        session = self._sessions.get(user)
        if session is None or ts - session.last_ts > self._gap:
            session = _Session(last_ts=ts)
        session.last_ts = max(session.last_ts, ts)
        self._sessions[user] = session
        self._sessions.move_to_end(user)
        while len(self._sessions) > self._max:  # bounded memory: drop the idlest sessions
            self._sessions.popitem(last=False)
        return session

    def observe(self, user: str, ts: int, kind: str, query: str | None) -> list[Increment]:
        """Feed one event; returns the counters it moves (conversions dated by their search)."""
        if kind == "search" and query:
            session = self._session(user, ts)
            out: list[Increment] = []
            for term in dict.fromkeys(self._seg.terms(query)):
                if term not in session.pending:
                    session.pending[term] = ts
                    out.append(("search", term, ts))
            return out
        if kind in CONVERTING_TYPES:
            session = self._session(user, ts)
            fresh = [t for t in session.pending if t not in session.converted]
            session.converted.update(fresh)
            return [("conv", t, session.pending[t]) for t in fresh]
        if user in self._sessions:
            self._session(user, ts)  # any activity keeps the session open
        return []


@dataclass(frozen=True, slots=True)
class UnmetNeed:
    """A term whose searches convert confidently below the site's pooled rate."""

    term: str
    searches: float
    conversions: float
    conversion_rate: float
    missed_conversions: float


def rank_unmet(
    searches: Mapping[str, float],
    conversions: Mapping[str, float],
    top: int = 20,
    min_searches: float = 5,
) -> list[UnmetNeed]:
    """Terms ranked by missed conversions (see :func:`insights.stats.conversion_gap`)."""
    total = float(sum(searches.values()))
    if total <= 0:
        return []
    pooled = min(1.0, float(sum(conversions.values())) / total)
    out: list[UnmetNeed] = []
    for term, n in searches.items():
        if n < min_searches:
            continue
        gap = conversion_gap(min(conversions.get(term, 0.0), n), n, pooled)
        if gap.missed > 0:
            out.append(UnmetNeed(term, n, gap.conversions, gap.rate, gap.missed))
    out.sort(key=lambda u: (-u.missed_conversions, u.term))
    return out[:top]


def load_queries(path: Path) -> list[str]:
    """Query texts of a ``qid<TAB>query`` file (the MultiCPR e-commerce format)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataFileError(f"cannot read query file {path}: {exc}") from exc
    rows = (line.split("\t", 1) for line in lines)
    queries = [parts[1].strip() for parts in rows if len(parts) == 2]
    if not queries:
        raise DataFileError(f"{path} has no `qid<TAB>query` lines")
    return [q for q in queries if q]
