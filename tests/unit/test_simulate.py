"""The shopper simulator: determinism, contract validity, text coherence, realistic funnels."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import pytest

from stream.contracts import Event, EventDecoder, encode_event
from tools.simulate import Behaviour, ShopperSimulator, default_catalogue

N_EVENTS = 20_000


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return list(islice(ShopperSimulator(seed=11, users=300), N_EVENTS))


def test_same_seed_gives_same_events_and_another_seed_does_not(events: list[Event]) -> None:
    again = list(islice(ShopperSimulator(seed=11, users=300), N_EVENTS))
    other = list(islice(ShopperSimulator(seed=12, users=300), N_EVENTS))
    assert again == events
    assert other != events


def test_iterating_twice_replays_the_stream() -> None:
    sim = ShopperSimulator(seed=3, users=20)
    assert list(islice(sim, 300)) == list(islice(sim, 300))


def test_events_come_in_event_time_order_from_the_start_time(events: list[Event]) -> None:
    timestamps = [e.ts for e in events]
    assert timestamps == sorted(timestamps)
    assert timestamps[0] >= ShopperSimulator(seed=11, users=300).start_ms


def test_every_event_passes_the_contract_decoder(events: list[Event]) -> None:
    decoder = EventDecoder(now_ms=lambda: events[-1].ts)
    for event in events:
        assert decoder.decode(encode_event(event)) == event


def test_event_ids_are_unique(events: list[Event]) -> None:
    assert len({e.event_id for e in events}) == len(events)


def test_all_event_types_and_categories_occur(events: list[Event]) -> None:
    catalogue = default_catalogue()
    assert {e.type for e in events} == {"view", "search", "cart", "fav", "purchase", "review"}
    assert {e.category_id for e in events} == {c.category_id for c in catalogue}


def test_queries_and_reviews_speak_of_their_category(events: list[Event]) -> None:
    catalogue = default_catalogue()
    texts = [
        (e, e.query if e.type == "search" else e.text)
        for e in events
        if e.type in ("search", "review")
    ]
    assert len(texts) > 100
    for event, text in texts:
        assert event.category_id is not None and text
        assert any(noun in text for noun in catalogue[event.category_id].nouns), (
            event.category_id,
            text,
        )


def test_review_tone_matches_its_rating(events: list[Event]) -> None:
    catalogue = default_catalogue()
    reviews = [e for e in events if e.type == "review"]
    assert reviews
    for review in reviews:
        assert (
            review.category_id is not None and review.text is not None and review.rating is not None
        )
        aspects = catalogue[review.category_id].aspects
        praised = any(a.positive in review.text for a in aspects)
        blamed = any(a.negative in review.text for a in aspects)
        assert praised != blamed
        assert (review.rating >= 4) == praised


def test_funnel_is_shaped_like_a_shop(events: list[Event]) -> None:
    counts = Counter(e.type for e in events)
    assert counts["view"] > 5 * counts["cart"] > 0
    assert counts["cart"] > counts["purchase"] > counts["review"] > 0
    # Every purchase and review follows a cart of the same item by the same shopper.
    carted: set[tuple[str, str | None]] = set()
    for event in events:
        if event.type == "cart":
            carted.add((event.user_id, event.item_id))
        elif event.type in ("purchase", "review"):
            assert (event.user_id, event.item_id) in carted


def test_prices_stay_in_their_category_range(events: list[Event]) -> None:
    catalogue = default_catalogue()
    for event in events:
        if event.price is not None:
            assert event.category_id is not None
            category = catalogue[event.category_id]
            assert category.price_min - 10 <= event.price <= category.price_max


def test_a_phone_purchase_wakes_interest_in_phone_accessories() -> None:
    # Without drift or exploration, a shopper's categories change only through purchases.
    behaviour = Behaviour(drift=0.0, complement_boost=2.0, purchase_prob=1.0, cart_prob=0.3)
    stream = list(islice(ShopperSimulator(seed=5, users=400, behaviour=behaviour), 60_000))
    accessories = set(default_catalogue()["1001"].complements)
    # Share of views that land on phone accessories: [before a phone purchase, after it].
    accessory_views, all_views = [0, 0], [0, 0]
    bought_phone: set[str] = set()
    for event in stream:
        if event.type == "purchase" and event.category_id == "1001":
            bought_phone.add(event.user_id)
        elif event.type == "view":
            after = int(event.user_id in bought_phone)
            all_views[after] += 1
            accessory_views[after] += event.category_id in accessories
    assert len(bought_phone) > 20
    share_before, share_after = (accessory_views[i] / all_views[i] for i in (0, 1))
    assert share_after > 1.3 * share_before


def test_interests_drift_over_time() -> None:
    stream = list(
        islice(ShopperSimulator(seed=9, users=30, behaviour=Behaviour(drift=0.3)), 30_000)
    )
    half = len(stream) // 2
    changed = 0
    for user in {e.user_id for e in stream}:
        early = Counter(e.category_id for e in stream[:half] if e.user_id == user)
        late = Counter(e.category_id for e in stream[half:] if e.user_id == user)
        if early and late and early.most_common(1)[0][0] != late.most_common(1)[0][0]:
            changed += 1
    assert changed >= 5


def test_users_must_be_positive() -> None:
    with pytest.raises(ValueError, match="users"):
        ShopperSimulator(seed=1, users=0)
