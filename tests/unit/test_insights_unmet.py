"""Unmet search needs on the real Taobao queries plus simulated sessions, and the tracker."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from insights_sim_sessions import simulate_sessions

from insights.text import ProductSegmenter
from insights.unmet import SessionTracker, load_queries, rank_unmet

QUERIES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "multicpr_ecom_queries" / "train.query.txt"


def _counts(events: list, tracker: SessionTracker) -> tuple[Counter[str], Counter[str]]:
    searched: Counter[str] = Counter()
    converted: Counter[str] = Counter()
    for e in events:
        for counter, term, _ in tracker.observe(e.user_id, e.ts, e.type, e.query):
            (searched if counter == "search" else converted)[term] += 1
    return searched, converted


def test_unmet_needs_from_real_queries_are_product_words() -> None:
    assert QUERIES.is_file(), f"real query file missing: {QUERIES} (shared data not laid out?)"
    queries = load_queries(QUERIES)
    assert len(queries) > 90_000
    sim = simulate_sessions(queries, sessions=4000, seed=11)
    seg = ProductSegmenter.default()
    searched, converted = _counts(sim.events, SessionTracker(seg))
    unmet = rank_unmet(searched, converted, top=20)
    assert len(unmet) >= 10
    for need in unmet:
        assert need.term not in seg.stop_words
        assert re.search(r"[\u4e00-\u9fffa-z]", need.term), need.term
        assert not re.fullmatch(r"[\W\d_]+", need.term), need.term
    top10 = {u.term for u in unmet[:10]}
    assert len(top10 & sim.planted_unmet) >= 3, (top10, sim.planted_unmet)


def test_session_gap_splits_sessions_and_conversion_counts_once() -> None:
    tracker = SessionTracker(session_gap_ms=1000)
    assert [t for _, t, _ in tracker.observe("u", 0, "search", "耳机 降噪")] == ["耳机", "降噪"]
    assert tracker.observe("u", 100, "search", "耳机") == []  # same session: counted once
    assert len(tracker.observe("u", 200, "purchase", None)) == 2
    assert tracker.observe("u", 300, "cart", None) == []  # already converted
    assert tracker.observe("u", 5000, "cart", None) == []  # new session, nothing searched
    assert tracker.observe("u", 5100, "search", "耳机")[0][1] == "耳机"


def test_tracker_memory_is_bounded() -> None:
    tracker = SessionTracker(max_sessions=10)
    for i in range(100):
        tracker.observe(f"u{i}", i, "search", "手机")
    assert len(tracker) == 10
