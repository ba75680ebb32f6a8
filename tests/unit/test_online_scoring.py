"""Online scoring (stream/evaluation): a prediction is judged by its user's next event whichever
topic is read first, the repeat baseline ranks like the trainer's, intents are labelled by the
next 10 events, and the event-time window slides."""

from __future__ import annotations

from itertools import islice

import pytest

from stream.contracts import CategoryScore, Event, Prediction
from stream.evaluation import Judged, OnlineMetrics, OnlineScorer, RepeatBaseline
from tools.simulate import ShopperSimulator

H = 3_600_000


def prediction(e: Event, ranking: list[str], intent: float = 0.2, version: str = "v") -> Prediction:
    demand = [CategoryScore(c, 0.1) for c in ranking]
    return Prediction(e.user_id, e.event_id, e.ts, e.ts, version, demand, intent, 1)


def run(scorer: OnlineScorer, records: list[Event | Prediction]) -> tuple[list[object], list[object]]:
    judged: list[object] = []
    intents: list[object] = []
    for r in records:
        j, i = scorer.add_event(r) if isinstance(r, Event) else scorer.add_prediction(r)
        judged += j
        intents += i
    return judged, intents


def test_judgements_do_not_depend_on_which_topic_is_read_first() -> None:
    events = list(islice(ShopperSimulator(seed=2, users=15), 400))
    preds = [prediction(e, [e.category_id or "x", "c-other"], intent=0.3) for e in events]
    live = [r for e, p in zip(events, preds, strict=True) for r in (e, p)]
    backlog: list[Event | Prediction] = [*events, *preds]
    ahead: list[Event | Prediction] = [*preds, *events]
    results = [sorted(map(repr, run(OnlineScorer(RepeatBaseline()), order)[0])) for order in (live, backlog, ahead)]
    assert results[0] == results[1] == results[2]
    users = {e.user_id for e in events}
    assert len(results[0]) == len(events) - len(users)  # every event but each user's last is judged


def test_ranks_baseline_and_intent_on_a_small_history() -> None:
    base = RepeatBaseline(half_life_h=1.0, type_weights={"cart": 2.0})
    scorer = OnlineScorer(base, k=3)
    e = [
        Event("e1", "u", 0, "view", category_id="a"),
        Event("e2", "u", H, "cart", category_id="b"),  # b: 2; a: 0.5 after an hour
        Event("e3", "u", H + 1, "view", category_id="a"),  # a: 1.5, b: ~2
        Event("e4", "u", H + 2, "purchase", category_id="a"),
    ]
    judged, intents = run(scorer, [e[0], prediction(e[0], ["b", "a"], 0.9), e[1], prediction(e[1], ["c", "d", "a"])])
    assert [(j.model_rank, j.baseline_rank) for j in judged] == [(1, 0)]  # type: ignore[attr-defined]  # b unseen yet
    judged, intents = run(scorer, [e[2], prediction(e[2], ["a"], 0.4), e[3]])
    # after e2 the baseline ranks b (cart, fresh) before a; after e3 ranks b (2.0) before a (1.5)
    assert [(j.model_rank, j.baseline_rank) for j in judged] == [(3, 2), (1, 2)]  # type: ignore[attr-defined]
    bought = {(i.probability, i.bought) for i in intents}  # type: ignore[attr-defined]
    assert bought == {(0.9, True), (0.2, True), (0.4, True)}


def test_an_intent_without_a_purchase_is_judged_after_ten_events() -> None:
    scorer = OnlineScorer(RepeatBaseline())
    events = [Event(f"e{i}", "u", i * 1000, "view", category_id="a") for i in range(12)]
    _, intents = run(scorer, [events[0], prediction(events[0], ["a"], 0.7), *events[1:10]])
    assert intents == []
    _, intents = run(scorer, [events[10]])
    assert [(i.probability, i.bought) for i in intents] == [(0.7, False)]  # type: ignore[attr-defined]


def test_the_event_time_window_slides() -> None:
    scorer = OnlineScorer(RepeatBaseline(), k=2)
    metrics = OnlineMetrics(window_ms=10 * H)
    for day in range(3):
        a = Event(f"a{day}", "u", day * 24 * H, "view", category_id="a")
        b = Event(f"b{day}", "u", day * 24 * H + 1, "view", category_id="b" if day < 2 else "a")
        metrics.record(*run(scorer, [a, prediction(a, ["b"]), b])[0:1], [])  # type: ignore[arg-type]
    row = metrics.publish()["v"]
    assert row["events"] == 1  # only the last day's pair is within 10 hours of the newest
    assert row["mrr_model"] == 0.0 and row["mrr_baseline"] == pytest.approx(1.0)
    assert metrics.registry.get_sample_value("demandstream_eval_judged_total", {"version": "v"}) == 3


def test_each_version_slides_its_own_window() -> None:
    """A shadow judged days ahead of the serving model's (late) predictions evicts nothing of it."""
    metrics = OnlineMetrics(window_ms=10 * H)
    metrics.record([Judged("serving", 0, 1, 0), Judged("shadow", 0, 1, 0), Judged("shadow", 48 * H, 2, 0)], [])
    summary = metrics.publish()
    assert summary["serving"]["events"] == 1 and summary["serving"]["mrr_model"] == 1.0
    assert summary["shadow"]["events"] == 1 and summary["shadow"]["mrr_model"] == 0.5
