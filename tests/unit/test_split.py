"""Time split: boundaries by date, fraction or last days; labels; and no leakage of later periods
into anything fitted (vocabulary, popularity, transitions)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream.contracts import Event
from stream.features.vocab import Vocabulary
from training.baselines import fit_baselines
from training.data.cleaning import UserSequence
from training.data.encoded import encode_sequences, training_tokens
from training.data.taobao import BEIJING
from training.exceptions import SplitError
from training.split import TEST, TRAIN, VALID, TimeSplit

H = 3_600_000


def test_boundaries_by_dates_fractions_and_last_days() -> None:
    by_date = TimeSplit.from_dates("2017-12-01", "2017-12-02T00:00+08:00")
    assert by_date.train_end_ms == 1_512_086_400_000  # naive date = UTC midnight
    assert by_date.valid_end_ms == 1_512_144_000_000
    by_fraction = TimeSplit.from_fractions(1000, 2000, 0.5, 0.75)
    assert (by_fraction.train_end_ms, by_fraction.valid_end_ms) == (1500, 1750)
    taobao = TimeSplit.last_days(1_512_316_763_000, tz=BEIJING)  # last Taobao event
    assert (taobao.train_end_ms, taobao.valid_end_ms) == (1_512_057_600_000, 1_512_144_000_000)


def test_bad_boundaries_are_refused() -> None:
    with pytest.raises(SplitError):
        TimeSplit(10, 5)
    with pytest.raises(SplitError):
        TimeSplit.from_fractions(0, 10, 0.9, 0.8)
    with pytest.raises(SplitError, match="ISO 8601"):
        TimeSplit.from_dates("yesterday", "today")


def test_periods_label_by_timestamp_and_record_as_json() -> None:
    split = TimeSplit(100, 200)
    codes = split.periods(np.array([0, 99, 100, 199, 200, 10**12], dtype=np.int64))
    assert codes.tolist() == [TRAIN, TRAIN, VALID, VALID, TEST, TEST]
    record = json.loads(json.dumps(split.to_dict()))
    assert record["train_end_ms"] == 100
    assert record["method"] == "explicit"


def _sequences(future_category: str) -> list[UserSequence]:
    """Two users; everything from hour 10 on uses ``future_category`` (valid/test periods)."""

    def ev(i: int, user: str, hour: int, cat: str, kind: str = "view") -> Event:
        return Event(f"{user}-{i}", user, hour * H, kind, category_id=cat)  # type: ignore[arg-type]

    return [
        UserSequence(
            "u1",
            [
                ev(0, "u1", 1, "a"),
                ev(1, "u1", 2, "b"),
                ev(2, "u1", 3, "a"),
                ev(3, "u1", 11, future_category),
                ev(4, "u1", 21, future_category),
            ],
        ),
        UserSequence(
            "u2",
            [
                ev(0, "u2", 4, "b"),
                ev(1, "u2", 5, "b", "cart"),
                ev(2, "u2", 12, future_category),
                ev(3, "u2", 22, "a"),
            ],
        ),
    ]


SPLIT = TimeSplit(10 * H, 20 * H)


def test_nothing_from_later_periods_reaches_what_is_fitted() -> None:
    fitted = {}
    for future in ("z", "a"):
        seqs = _sequences(future)
        vocab = Vocabulary.build(training_tokens(seqs, SPLIT, "category"))
        data = encode_sequences(seqs, vocab, SPLIT)
        fitted[future] = (vocab, fit_baselines(data, tune=False))
    (vocab_z, base_z), (vocab_a, base_a) = fitted["z"], fitted["a"]
    assert vocab_z == vocab_a
    assert "z" not in vocab_z
    np.testing.assert_array_equal(base_z.popularity, base_a.popularity)
    assert (base_z.transitions != base_a.transitions).nnz == 0


def test_future_only_category_is_out_of_vocabulary_and_a_miss() -> None:
    seqs = _sequences("z")
    vocab = Vocabulary.build(training_tokens(seqs, SPLIT, "category"))
    data = encode_sequences(seqs, vocab, SPLIT)
    test_queries = data.queries(TEST)
    assert data.target[test_queries].tolist() == [1, vocab.index("a")]  # 1 = OOV
    ranked = fit_baselines(data, tune=False).rank(test_queries)
    for topk in ranked.values():
        assert 1 not in topk[0] and 0 not in topk


def test_test_events_see_every_earlier_event_of_their_user() -> None:
    seqs = _sequences("a")
    vocab = Vocabulary.build(training_tokens(seqs, SPLIT, "category"))
    data = encode_sequences(seqs, vocab, SPLIT)
    test_queries = data.queries(TEST)
    assert data.history_len[test_queries].tolist() == [4, 3]  # train + validation events
    assert data.queries(VALID).tolist() == [3, 7]
