"""A seeded generator of realistic shoppers, yielding contract :class:`Event` s in event-time order.

Each shopper has latent interests over the catalogue's categories (a sparse Dirichlet draw
weighted by category popularity) that drift a little every session. A session focuses on one
category: maybe a search first, then views of popular-first items, the odd detour into another
interest, favourites and cart adds, and sometimes a purchase. A purchase satiates that category
and wakes interest in its complements (a new phone -> a case, a power bank), and is sometimes
followed days later by a review whose tone matches its rating.

>>> from itertools import islice
>>> sim = ShopperSimulator(seed=7, users=50)
>>> events = list(islice(sim, 500))
>>> [e.ts for e in events] == sorted(e.ts for e in events)
True
>>> events == list(islice(ShopperSimulator(seed=7, users=50), 500))
True
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from stream.contracts import Event, EventType
from tools.simulate.catalogue import Catalogue, Category, default_catalogue
from tools.simulate.text import review, search_query

# 2024-06-01T00:00:00Z: a fixed default start, so that a seed alone fixes the output.
DEFAULT_START_MS: Final = 1_717_200_000_000
_ZIPF_EXPONENT: Final = 1.1  # item popularity within a category: a few hits, a long tail


@dataclass(frozen=True)
class Behaviour:
    """Tunables of the shopper model; the defaults give Taobao-like funnels."""

    mean_session_gap_s: float = 4 * 3600.0
    mean_events_per_session: float = 8.0
    mean_think_time_s: float = 40.0
    search_prob: float = 0.35
    explore_prob: float = 0.12
    fav_prob: float = 0.05
    cart_prob: float = 0.08
    purchase_prob: float = 0.5
    review_prob: float = 0.35
    review_delay_s: tuple[float, float] = (86_400.0, 5 * 86_400.0)
    satisfied_prob: float = 0.8
    interest_concentration: float = 0.4
    drift: float = 0.08
    satiation: float = 0.25
    complement_boost: float = 0.4


@dataclass
class _Shopper:
    index: int
    user_id: str
    interests: list[float]
    activity: float
    next_session_ms: int
    # Events generated but not yet due, as (ts, sequence, event): sessions are generated whole,
    # and reviews are scheduled days ahead, so they wait here until the global clock reaches them.
    pending: list[tuple[int, int, Event]] = field(default_factory=list)

    def next_ts(self) -> int:
        return (
            min(self.pending[0][0], self.next_session_ms) if self.pending else self.next_session_ms
        )


class _World:
    """Per-category item popularity and prices; fixed by the seed, shared by all shoppers."""

    def __init__(self, catalogue: Catalogue, rng: random.Random) -> None:
        self.categories = catalogue.categories
        self.popularity = [c.popularity for c in self.categories]
        self.index = {c.category_id: i for i, c in enumerate(self.categories)}
        self.item_cum_weights: list[list[float]] = []
        self.item_prices: list[list[float]] = []
        for category in self.categories:
            weights = [1.0 / (rank + 1) ** _ZIPF_EXPONENT for rank in range(category.items)]
            self.item_cum_weights.append(list(itertools.accumulate(weights)))
            low, high = math.log(category.price_min), math.log(category.price_max)
            # Shop prices end in 9 (1999.0, 59.0): cosmetic, but it makes the demo read true.
            self.item_prices.append(
                [
                    float(max(int(math.exp(rng.uniform(low, high))) // 10 * 10 - 1, 1))
                    for _ in range(category.items)
                ]
            )

    def pick_item(self, cat: int, rng: random.Random) -> tuple[str, float]:
        (rank,) = rng.choices(
            range(len(self.item_prices[cat])), cum_weights=self.item_cum_weights[cat]
        )
        return f"i{self.categories[cat].category_id}-{rank:04d}", self.item_prices[cat][rank]


class ShopperSimulator:
    """Seeded shoppers over a catalogue; iterate it for an endless, event-time-ordered stream.

    Iterating again (or building another simulator with the same arguments) replays the exact
    same events: all randomness comes from ``seed``. ``start_ms`` is the event time of the
    simulated world's start; event time then advances with the shoppers' sessions, independent
    of wall time (a caller that wants "live" timestamps picks ``start_ms`` accordingly).
    """

    def __init__(
        self,
        seed: int,
        users: int,
        catalogue: Catalogue | None = None,
        *,
        start_ms: int = DEFAULT_START_MS,
        behaviour: Behaviour | None = None,
    ) -> None:
        if users < 1:
            raise ValueError("users must be at least 1")
        self.seed = seed
        self.users = users
        self.catalogue = catalogue or default_catalogue()
        self.start_ms = start_ms
        self.behaviour = behaviour or Behaviour()

    def __iter__(self) -> Iterator[Event]:
        return _Run(self).events()


class _Run:
    """One pass over the simulated world; all state of an iteration lives here."""

    def __init__(self, sim: ShopperSimulator) -> None:
        self.rng = random.Random(sim.seed)
        self.b = sim.behaviour
        self.lexicon = sim.catalogue.lexicon
        self.world = _World(sim.catalogue, self.rng)
        self.sequence = itertools.count()
        width = max(6, len(str(sim.users)))
        self.shoppers = [
            self._new_shopper(i, f"u{i:0{width}d}", sim.start_ms) for i in range(sim.users)
        ]

    def events(self) -> Iterator[Event]:
        queue = [(s.next_ts(), s.index) for s in self.shoppers]
        heapq.heapify(queue)
        while True:
            ts, index = queue[0]
            shopper = self.shoppers[index]
            if shopper.pending and shopper.pending[0][0] == ts:
                yield heapq.heappop(shopper.pending)[2]
            else:
                self._start_session(shopper)
            heapq.heapreplace(queue, (shopper.next_ts(), index))

    # --- shoppers and their interests ------------------------------------------------------

    def _new_shopper(self, index: int, user_id: str, start_ms: int) -> _Shopper:
        activity = self.rng.lognormvariate(0.0, 0.6)  # some shoppers visit far more often
        first = start_ms + int(self.rng.uniform(0, self.b.mean_session_gap_s / activity) * 1000)
        return _Shopper(index, user_id, self._dirichlet(), activity, first)

    def _dirichlet(self) -> list[float]:
        # A small concentration makes each shopper care about a few categories, not all.
        draws = [
            self.rng.gammavariate(self.b.interest_concentration * p, 1.0) + 1e-9
            for p in self.world.popularity
        ]
        total = sum(draws)
        return [d / total for d in draws]

    def _choose_category(self, shopper: _Shopper) -> int:
        return self.rng.choices(range(len(shopper.interests)), weights=shopper.interests)[0]

    def _after_purchase(self, shopper: _Shopper, cat: int) -> None:
        interests = shopper.interests
        interests[cat] *= self.b.satiation
        for complement in self.world.categories[cat].complements:
            interests[self.world.index[complement]] += (
                self.b.complement_boost / 2 + self.rng.random() * self.b.complement_boost / 2
            )
        total = sum(interests)
        shopper.interests = [w / total for w in interests]

    def _drift(self, shopper: _Shopper) -> None:
        fresh = self._dirichlet()
        d = self.b.drift
        shopper.interests = [
            (1 - d) * old + d * new for old, new in zip(shopper.interests, fresh, strict=True)
        ]

    # --- sessions ------------------------------------------------------------------------------

    def _event(
        self,
        shopper: _Shopper,
        ts: int,
        kind: EventType,
        category: Category,
        *,
        item_id: str | None = None,
        price: float | None = None,
        query: str | None = None,
        text: str | None = None,
        rating: int | None = None,
    ) -> None:
        # uuid4 from the seeded generator: unique idempotency keys that a seed still reproduces.
        event_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        event = Event(
            event_id=event_id,
            user_id=shopper.user_id,
            ts=ts,
            type=kind,
            item_id=item_id,
            category_id=category.category_id,
            query=query,
            text=text,
            rating=rating,
            price=price,
        )
        heapq.heappush(shopper.pending, (ts, next(self.sequence), event))

    def _start_session(self, shopper: _Shopper) -> None:
        b, rng, world = self.b, self.rng, self.world
        ts = shopper.next_session_ms
        focal = self._choose_category(shopper)
        steps = 1 + int(rng.expovariate(1.0 / max(b.mean_events_per_session - 1, 1e-3)))
        carted: list[tuple[int, str, float]] = []
        for step in range(min(steps, 60)):
            if rng.random() < (b.search_prob if step == 0 else b.search_prob / 5):
                category = world.categories[focal]
                self._event(
                    shopper, ts, "search", category, query=search_query(category, self.lexicon, rng)
                )
            else:
                cat = self._choose_category(shopper) if rng.random() < b.explore_prob else focal
                item_id, price = world.pick_item(cat, rng)
                category = world.categories[cat]
                self._event(shopper, ts, "view", category, item_id=item_id, price=price)
                roll = rng.random()
                if roll < b.fav_prob:
                    ts += int(rng.uniform(2, 15) * 1000)
                    self._event(shopper, ts, "fav", category, item_id=item_id, price=price)
                elif roll < b.fav_prob + b.cart_prob:
                    ts += int(rng.uniform(2, 15) * 1000)
                    self._event(shopper, ts, "cart", category, item_id=item_id, price=price)
                    carted.append((cat, item_id, price))
            ts += int(rng.expovariate(1.0 / b.mean_think_time_s) * 1000) + 1000
        if carted and rng.random() < b.purchase_prob:
            cat, item_id, price = rng.choice(carted)
            self._event(
                shopper, ts, "purchase", world.categories[cat], item_id=item_id, price=price
            )
            self._after_purchase(shopper, cat)
            if rng.random() < b.review_prob:
                self._schedule_review(shopper, ts, cat, item_id)
        self._drift(shopper)
        gap_s = rng.expovariate(shopper.activity / b.mean_session_gap_s)
        shopper.next_session_ms = ts + int(gap_s * 1000) + 60_000

    def _schedule_review(self, shopper: _Shopper, purchase_ts: int, cat: int, item_id: str) -> None:
        rng = self.rng
        satisfied = rng.random() < self.b.satisfied_prob
        rating = rng.choice((4, 5, 5)) if satisfied else rng.choice((1, 2, 3))
        category = self.world.categories[cat]
        text = review(category, self.lexicon, rng, positive=satisfied)
        ts = purchase_ts + int(rng.uniform(*self.b.review_delay_s) * 1000)
        self._event(shopper, ts, "review", category, item_id=item_id, text=text, rating=rating)
