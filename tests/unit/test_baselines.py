"""Baselines on small hand-made sequences whose rankings can be worked out by hand."""

from __future__ import annotations

import numpy as np

from stream.contracts import Event
from stream.features.vocab import Vocabulary
from training.baselines import (
    FittedBaselines,
    RepeatParams,
    fit_baselines,
    history_pairs,
    previous_targets,
)
from training.data.cleaning import UserSequence
from training.data.encoded import EncodedEvents, encode_sequences, training_tokens
from training.split import TEST, TimeSplit

H = 3_600_000
SPLIT = TimeSplit(100 * H, 200 * H)  # train < 100h, validation < 200h, test after


def _user(name: str, *steps: tuple[float, str, str]) -> UserSequence:
    events = [
        Event(f"{name}{i}", name, int(hour * H), kind, category_id=cat)  # type: ignore[arg-type]
        for i, (hour, cat, kind) in enumerate(steps)
    ]
    return UserSequence(name, events)


def _fit(sequences: list[UserSequence]) -> tuple[Vocabulary, EncodedEvents, FittedBaselines]:
    vocab = Vocabulary.build(training_tokens(sequences, SPLIT, "category"))
    data = encode_sequences(sequences, vocab, SPLIT)
    return vocab, data, fit_baselines(data, tune=False)


# Training: "a" 4 times, "b" 3, "c" 2, "d" 1; transitions a->c twice, a->b once.
TRAIN_USERS = [
    _user("p", (1, "a", "view"), (2, "c", "view"), (3, "a", "view"), (4, "c", "cart")),
    _user("q", (1, "a", "view"), (2, "b", "view"), (3, "b", "view"), (4, "b", "purchase")),
    _user("r", (1, "d", "view"), (2, "a", "view")),
]


def test_popularity_ranks_training_counts() -> None:
    user = _user("t", (150, "d", "view"), (250, "a", "view"))
    vocab, data, fitted = _fit([*TRAIN_USERS, user])
    topk = fitted.rank(data.queries(TEST))["popularity"]
    assert vocab.lookup(topk[0]) == ["a", "b", "c", "d"]  # width = 4 real tokens < 20


def test_repeat_prefers_recent_with_short_half_life_and_frequent_with_long() -> None:
    user = _user(
        "t",
        (10, "b", "view"),
        (11, "b", "view"),
        (12, "b", "view"),
        (98, "d", "view"),
        (250, "c", "view"),
    )
    vocab, data, fitted = _fit([*TRAIN_USERS, user])
    query = data.queries(TEST)
    fitted.repeat = RepeatParams(half_life_h=10.0)
    assert vocab.lookup(fitted.rank(query)["repeat"][0][:2]) == ["d", "b"]
    fitted.repeat = RepeatParams(half_life_h=10_000.0)
    assert vocab.lookup(fitted.rank(query)["repeat"][0][:2]) == ["b", "d"]
    # categories the user never touched follow, in popularity order
    assert vocab.lookup(fitted.rank(query)["repeat"][0][2:]) == ["a", "c"]


def test_repeat_type_weights_change_the_order() -> None:
    user = _user("t", (90, "b", "cart"), (91, "d", "view"), (250, "a", "view"))
    vocab, data, fitted = _fit([*TRAIN_USERS, user])
    query = data.queries(TEST)
    fitted.repeat = RepeatParams(half_life_h=1000.0)
    assert vocab.lookup(fitted.rank(query)["repeat"][0][:2]) == ["d", "b"]  # recency decides
    weights = {**RepeatParams().type_weights, "cart": 3.0}
    fitted.repeat = RepeatParams(half_life_h=1000.0, type_weights=weights)
    assert vocab.lookup(fitted.rank(query)["repeat"][0][:2]) == ["b", "d"]


def test_markov_follows_the_last_category_and_backs_off_to_popularity() -> None:
    after_a = _user("t", (150, "a", "view"), (250, "d", "view"))
    after_new = _user("u", (150, "zzz", "view"), (250, "d", "view"))  # OOV: no transitions
    vocab, data, fitted = _fit([*TRAIN_USERS, after_a, after_new])
    markov = fitted.rank(data.queries(TEST))["markov"]
    assert vocab.lookup(markov[0][:2]) == ["c", "b"]  # a->c twice, a->b once
    assert vocab.lookup(markov[1]) == ["a", "b", "c", "d"]


def test_rankings_never_hold_padding_or_oov_and_have_no_repeats() -> None:
    user = _user("t", (150, "zzz", "view"), (250, "zzz", "view"), (251, "a", "view"))
    _, data, fitted = _fit([*TRAIN_USERS, user])
    queries = data.queries(TEST)
    assert data.target[queries].tolist()[0] == 1  # OOV target is still evaluated (a miss)
    for topk in fitted.rank(queries).values():
        assert topk.shape == (2, 4)
        assert (topk >= 2).all()
        assert all(len(set(row)) == len(row) for row in topk.tolist())


def test_tuning_picks_parameters_from_validation_only() -> None:
    # In validation, users return to their latest category, not their most frequent one: at the
    # default 24 h half-life the three older "b" views outweigh "c"; at <= 3 h "c" comes first.
    users = [
        _user(
            f"v{i}",
            (130, "b", "view"),
            (131, "b", "view"),
            (132, "b", "view"),
            (139, "c", "view"),
            (140, "c", "view"),
        )
        for i in range(5)
    ]
    _, data, _ = _fit([*TRAIN_USERS, *users])
    tuned = fit_baselines(data, tune=True)
    assert tuned.repeat.half_life_h <= 3.0
    assert set(tuned.params()) == {"repeat", "blend"}


def test_intent_baseline_is_purchase_rate_after_each_type() -> None:
    user = _user("t", (150, "a", "cart"), (250, "a", "view"))
    _, data, fitted = _fit([*TRAIN_USERS, user])
    # training transitions: 7 follow a view, 1 of them a purchase -> (1 + 1) / (7 + 2)
    assert fitted.intent_scores(data.queries(TEST)).tolist() == [0.5]  # after "cart": unseen
    view_query = np.array([data.starts[1] + 3])  # q's purchase, preceded by a view
    assert fitted.intent_scores(view_query).tolist() == [2 / 9]


def test_history_pairs_and_previous_targets() -> None:
    _, data, _ = _fit(TRAIN_USERS)
    row, hist = history_pairs(data, np.array([2, 5]))
    assert row.tolist() == [0, 0, 1]
    assert hist.tolist() == [0, 1, 4]
    prev = previous_targets(data)
    assert prev[0] == 0 and prev[4] == 0  # first event of a user has no previous category
    assert prev[1] == data.target[0]
