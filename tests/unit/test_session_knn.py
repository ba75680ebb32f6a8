"""item-kNN and V-SKNN (training/session_knn.py) on hand-made sessions with known neighbours."""

from __future__ import annotations

from stream.contracts import Event
from stream.features.vocab import Vocabulary
from training.baselines import fit_baselines
from training.data.cleaning import UserSequence
from training.data.encoded import encode_sequences, training_tokens
from training.session_knn import session_ids
from training.split import TEST, TimeSplit

H = 3_600_000
SPLIT = TimeSplit(100 * H, 200 * H)


def _user(name: str, *steps: tuple[float, str]) -> UserSequence:
    events = [Event(f"{name}{i}", name, int(h * H), "view", category_id=c) for i, (h, c) in enumerate(steps)]
    return UserSequence(name, events)


# Training sessions (a gap of hours splits them): {a, b, c} twice, {a, d}, {e, f} three times.
TRAIN = [
    _user("p", (1, "a"), (1.1, "b"), (1.2, "c"), (10, "e"), (10.1, "f")),
    _user("q", (1, "a"), (1.1, "b"), (1.2, "c"), (20, "e"), (20.1, "f")),
    _user("r", (1, "a"), (1.1, "d"), (30, "e"), (30.1, "f")),
]


def _rank(test_user: UserSequence) -> tuple[Vocabulary, dict[str, list[str]]]:
    sequences = [*TRAIN, test_user]
    vocab = Vocabulary.build(training_tokens(sequences, SPLIT, "category"))
    data = encode_sequences(sequences, vocab, SPLIT)
    queries = data.queries(TEST)
    ranked = fit_baselines(data, tune=False).rank(queries[-1:], k=3)
    return vocab, {name: vocab.lookup(top[0]) for name, top in ranked.items() if name in ("item_knn", "sknn")}


def test_sessions_split_at_long_gaps_and_at_users() -> None:
    sequences = TRAIN
    vocab = Vocabulary.build(training_tokens(sequences, SPLIT, "category"))
    data = encode_sequences(sequences, vocab, SPLIT)
    assert session_ids(data).tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5]


def test_item_knn_ranks_what_co_occurs_with_the_last_target() -> None:
    _, ranked = _rank(_user("t", (150, "e"), (250, "e")))
    assert ranked["item_knn"][0] == "f"  # e and f share all three of their sessions
    _, ranked = _rank(_user("t", (150, "b"), (250, "b")))
    assert set(ranked["item_knn"][:2]) == {"a", "c"} and "e" not in ranked["item_knn"][:2]


def test_sknn_scores_targets_of_sessions_like_the_current_one() -> None:
    # current session (a weight 1/2, b weight 1): similarity 1.5 to each {a, b, c}, 0.5 to {a, d},
    # 0 to {e, f}; scores a 3.5, b 3.0, c 3.0, d 0.5
    _, ranked = _rank(_user("t", (250, "a"), (250.1, "b"), (250.2, "x")))
    assert ranked["sknn"][0] == "a" and set(ranked["sknn"][1:3]) == {"b", "c"}
