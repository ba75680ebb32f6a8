"""A small seeded generator of shopping sessions over real query texts, for the unmet-needs tests
(test data only: a report never mixes simulated sessions into its findings).

Some terms are planted as "unmet": sessions whose query contains one convert rarely. Everything
else converts at a normal rate. The planted terms are returned so a test can check the ranking
finds them. (The project's full traffic simulator lives in ``tools.simulate``; this one only
needs searches followed, or not, by a cart or purchase.)

>>> sim = simulate_sessions(["蓝牙耳机", "手机壳 防摔", "汉服 女"], sessions=50, seed=3)
>>> len(sim.events) > 50 and {e.type for e in sim.events} <= {"search", "cart", "purchase", "view"}
True
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from insights.text import ProductSegmenter
from stream.contracts import Event, EventType


@dataclass(frozen=True, slots=True)
class SimulatedSessions:
    events: list[Event]
    planted_unmet: frozenset[str]


def simulate_sessions(
    queries: list[str],
    sessions: int = 5000,
    unmet_terms: int = 15,
    seed: int = 7,
    start_ms: int = 1_700_000_000_000,
    normal_rate: float = 0.35,
    unmet_rate: float = 0.02,
    segmenter: ProductSegmenter | None = None,
) -> SimulatedSessions:
    """Sessions of 1-3 searches drawn Zipf-like from ``queries``, then maybe a cart/purchase.

    The ``unmet_terms`` planted terms are picked among frequent terms of the most popular
    queries, so that they get enough searches to be detectable.
    """
    seg = segmenter or ProductSegmenter.default()
    rng = random.Random(seed)
    pool = queries[: max(50, min(len(queries), 2000))]
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(pool))]  # Zipf-like popularity
    term_freq: Counter[str] = Counter()
    popular = rng.choices(pool, weights=weights, k=2000)
    for q in popular:
        term_freq.update(set(seg.terms(q)))
    candidates = [t for t, _ in term_freq.most_common(unmet_terms * 4) if len(t) > 1]
    planted = frozenset(rng.sample(candidates, min(unmet_terms, len(candidates))))
    events: list[Event] = []
    ts = start_ms
    for s in range(sessions):
        user = f"sim-u{s % max(1, sessions // 3)}"
        ts += rng.randint(1_000, 60_000)
        now = ts
        searched: list[str] = []
        for _ in range(rng.randint(1, 3)):
            query = rng.choices(pool, weights=weights, k=1)[0]
            searched.append(query)
            events.append(Event(f"sim-{s}-{len(events)}", user, now, "search", query=query))
            now += rng.randint(2_000, 90_000)
        unmet = any(t in planted for q in searched for t in seg.terms(q))
        if rng.random() < (unmet_rate if unmet else normal_rate):
            kind: EventType = "purchase" if rng.random() < 0.4 else "cart"
            events.append(Event(f"sim-{s}-{len(events)}", user, now, kind, item_id=f"i{s}"))
        else:
            events.append(Event(f"sim-{s}-{len(events)}", user, now, "view", item_id=f"i{s}"))
        # The next session of the same user starts after the session gap.
        ts = max(ts, now) + 31 * 60 * 1000 // max(1, sessions // 3)
    events.sort(key=lambda e: e.ts)
    return SimulatedSessions(events, planted)
