"""Purchase-intent judging (training/intent.py): labels agree with the trainer's, the baselines
see only the past, the reliability numbers are right, and the Platt fit folded into the intent
head changes the head's output exactly as applied outside it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.models import generated_histories

from stream.features import EventEncoder, FeatureSpec, Vocabulary
from training.data import UserSequence, encode_sequences, training_tokens
from training.intent import (
    Platt,
    cart_fav_recency,
    count_logistic,
    flat_intent_labels,
    fold_platt,
    intent_report,
    reliability,
)
from training.sequences import encode_history
from training.split import TEST, TimeSplit


@pytest.fixture(scope="module")
def encoded() -> tuple[list[UserSequence], TimeSplit]:
    histories = generated_histories(users=60, seed=5, max_len=40)
    sequences = [UserSequence(h[0].user_id, h) for h in histories]
    first = min(s.events[0].ts for s in sequences)
    last = max(s.events[-1].ts for s in sequences)
    return sequences, TimeSplit.from_fractions(first, last, 0.7, 0.85)


def test_flat_labels_are_the_trainers_labels(encoded: tuple[list[UserSequence], TimeSplit]) -> None:
    sequences, split = encoded
    categories = Vocabulary.build(training_tokens(sequences, split, "category"))
    items = Vocabulary.build(training_tokens(sequences, split, "item"))
    encoder = EventEncoder(FeatureSpec(window=8, text_tokens=3, text_buckets=256), categories, items)
    data = encode_sequences(sequences, categories, split, "category")
    trainer = np.concatenate([encode_history(s.user_id, s.events, encoder, split).intent for s in sequences])
    flat = flat_intent_labels(data)
    assert np.array_equal(flat, trainer)
    assert set(np.unique(flat)) == {-1, 0, 1}


def test_baselines_only_read_the_past(encoded: tuple[list[UserSequence], TimeSplit]) -> None:
    sequences, split = encoded
    categories = Vocabulary.build(training_tokens(sequences, split, "category"))
    data = encode_sequences(sequences, categories, split, "category")
    positions = data.queries(TEST) - 1
    recency = cart_fav_recency(data, positions)
    assert ((recency >= 0) & (recency <= 1)).all() and (recency == 1).any()
    # events after each position (labels included) changed: the scores stay the same
    future = data.etype.copy()
    for p in positions[:5]:
        end = data.starts[data.user[p] + 1]
        future[p + 1 : end] = 0
    changed = type(data)(**{**data.__dict__, "etype": future})
    assert np.allclose(cart_fav_recency(changed, positions[:5]), recency[:5])
    scores = count_logistic(data, positions)
    assert scores.shape == positions.shape and ((scores > 0) & (scores < 1)).all()


def test_reliability_numbers() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0], dtype=bool)
    scores = np.array([0.05, 0.15, 0.12, 0.95, 0.85, 0.91, 0.55, 0.52])
    r = reliability(labels, scores)
    assert r["roc_auc"] == 1.0
    assert r["brier"] == pytest.approx(np.mean((scores - labels) ** 2), abs=1e-4)
    by_bin = {row["bin"]: row for row in r["reliability"]}
    assert by_bin[5] == {"bin": 5, "n": 2, "mean_probability": 0.535, "observed_rate": 0.5}
    assert sum(row["n"] for row in r["reliability"]) == len(labels)
    report = intent_report(labels, {"lstm": scores, "flat": np.full(8, 0.5), "half": np.where(labels, 0.6, 0.55)})
    assert report["best_baseline"] == "half" and report["model_beats_best_baseline"] is False


def test_platt_fixes_a_miscalibrated_score_and_folds_into_the_head() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.05, 0.6, 20_000)
    labels = rng.random(truth.size) < truth
    overconfident = 1 / (1 + np.exp(-3 * np.log(truth / (1 - truth)) - 1))
    platt = Platt.fit(labels, overconfident)
    assert reliability(labels, overconfident)["ece"] > 0.1
    assert reliability(labels, platt.apply(overconfident))["ece"] < 0.02
    assert platt.invert(platt.apply(overconfident)) == pytest.approx(overconfident, abs=1e-6)

    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    x = torch.randn(32, 4)
    before = torch.sigmoid(head(x)).detach().numpy().ravel()
    fold_platt(head, platt)
    after = torch.sigmoid(head(x)).detach().numpy().ravel()
    assert after == pytest.approx(platt.apply(before.astype(np.float64)), abs=1e-5)
