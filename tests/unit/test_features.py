"""The shared featurizer: whole-history (training) features equal per-event (serving) features, time
and price buckets on hand-computed values, stable text hashing, vocabulary files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.models import CATEGORIES, ITEMS, generated_histories

from stream.contracts import Event
from stream.features import OOV, PAD, EventEncoder, FeatureSpec, StaticColumn, Vocabulary
from stream.features.encode import (
    TYPE_INDEX,
    age_buckets,
    gap_buckets,
    hour_buckets,
    sequence_window_features,
    step_features,
    target_column,
    window_features,
)
from stream.features.exceptions import VocabularyFormatError
from stream.features.text import hash_token, segment, text_token_ids

_REPO = Path(__file__).resolve().parents[2]
_SEC = 1000
_HOUR = 3600 * _SEC
_DAY = 24 * _HOUR


# --- sequence_window_features == window_features(prefix) at every position -----------------------


@st.composite
def histories(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    n = draw(st.integers(0, 40))
    window = draw(st.integers(1, 12))
    cats = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
    types = draw(st.lists(st.integers(1, 6), min_size=n, max_size=n))
    # gaps from 0 (same millisecond) to several days; some negative (an out-of-order event)
    gaps = draw(st.lists(st.integers(-5 * _SEC, 6 * _DAY), min_size=n, max_size=n))
    ts = 1_511_000_000_000 + np.cumsum(np.asarray(gaps, dtype=np.int64))
    return np.asarray(cats, dtype=np.int64), np.asarray(types, dtype=np.int64), ts, window


@settings(max_examples=200, deadline=None)
@given(histories())
def test_sequence_window_features_equal_window_features_of_each_prefix(
    history: tuple[np.ndarray, np.ndarray, np.ndarray, int],
) -> None:
    cats, types, ts, window = history
    spec = FeatureSpec(window=window)
    seq = sequence_window_features(cats, types, ts, spec)
    assert all(a.shape == (len(cats), window) and a.dtype == np.int64 for a in seq)
    for t in range(len(cats)):
        expected = window_features(cats[: t + 1], types[: t + 1], ts[: t + 1], spec)
        for got, want in zip(seq, expected, strict=True):
            np.testing.assert_array_equal(got[t], want)


def test_window_features_hand_computed() -> None:
    spec = FeatureSpec(window=4)
    cats = np.array([5, 6, 7])
    types = np.array([1, 2, 3])
    ts = np.array([0, 90 * _SEC, 100 * _SEC])
    got_c, got_t, got_a = window_features(cats, types, ts, spec)
    assert got_c.tolist() == [7, 6, 5, 0]  # most recent first, zero padded
    assert got_t.tolist() == [3, 2, 1, 0]
    # ages 0 s, 10 s, 100 s -> edges (60, 300, ...): buckets 1, 1, 2; padding 0
    assert got_a.tolist() == [1, 1, 2, 0]


def test_window_keeps_only_the_last_events() -> None:
    spec = FeatureSpec(window=2)
    cats, _, _ = window_features(np.arange(2, 9), np.ones(7), np.arange(7) * _SEC, spec)
    assert cats.tolist() == [8, 7]


def test_training_encoding_equals_serving_encoding_on_generated_shoppers() -> None:
    """The trainer encodes whole histories at once; encoded one event at a time (its prefix and
    the previous timestamp) every position must get the same model inputs. The worker's own
    batched path is held to the trainer's in test_worker_stepper (serving = training evaluation)."""
    spec = FeatureSpec(window=7, text_tokens=3, text_buckets=256)
    encoder = EventEncoder(spec, Vocabulary(CATEGORIES[:30]), Vocabulary(ITEMS[:50]))
    for events in generated_histories(users=12, seed=5):
        rows = encoder.static_rows(events)
        ts = np.array([e.ts for e in events], dtype=np.int64)
        whole_steps = step_features(rows, ts, None, spec)
        whole_win = sequence_window_features(rows[:, target_column(spec)], rows[:, StaticColumn.TYPE], ts, spec)
        for t, event in enumerate(events):
            row = encoder.static_row(event)
            np.testing.assert_array_equal(row, rows[t])
            prev = None if t == 0 else int(ts[t - 1])
            one = step_features(row[None], ts[t : t + 1], prev, spec)
            np.testing.assert_array_equal(one[0], whole_steps[t])
            prefix = rows[: t + 1]
            served = window_features(prefix[:, StaticColumn.CATEGORY], prefix[:, StaticColumn.TYPE], ts[: t + 1], spec)
            for got, want in zip(whole_win, served, strict=True):
                np.testing.assert_array_equal(got[t], want)


def test_item_target_window_reads_the_item_column() -> None:
    spec = FeatureSpec(window=3, target="item", text_tokens=1)
    encoder = EventEncoder(spec, Vocabulary(["c1"]), Vocabulary(["i1", "i2"]))
    events = [
        Event(event_id=f"e{i}", user_id="u", ts=i * _SEC, type="view", item_id=item, category_id="c1")
        for i, item in enumerate(["i1", "i2", "i9"])
    ]
    rows = encoder.static_rows(events)
    ts = np.array([e.ts for e in events], dtype=np.int64)
    assert target_column(spec) == StaticColumn.ITEM
    cats, _, _ = sequence_window_features(rows[:, target_column(spec)], rows[:, StaticColumn.TYPE], ts, spec)
    assert cats[-1].tolist() == [OOV, 3, 2]


# --- time and price buckets -------------------------------------------------------------------------


def test_gap_buckets_hand_computed() -> None:
    spec = FeatureSpec()  # gap edges (2, 10, 30, 60, 180, 600, 1800, 3600, 3h, 8h, 1d, 3d) seconds
    offsets_s = [0, 1, 3, 13, 13, 3613, 3613 + 86400, 3613 + 86400 + 10 * 86400]
    ts = np.array([1_000_000 + s * _SEC for s in offsets_s], dtype=np.int64)
    # gaps:      first  1 s   2 s  10 s  0 s   3600 s  1 day  10 days
    expected = [0, 1, 2, 3, 1, 9, 12, 13]
    assert gap_buckets(ts, None, spec).tolist() == expected
    assert max(expected) == spec.n_gap_buckets - 1


def test_gap_bucket_uses_the_previous_event_when_given() -> None:
    spec = FeatureSpec()
    ts = np.array([100 * _SEC, 101 * _SEC])
    assert gap_buckets(ts, 100 * _SEC - 45 * _SEC, spec).tolist() == [4, 1]  # 45 s -> (30, 60]; 1 s -> first
    assert gap_buckets(ts, 200 * _SEC, spec).tolist() == [1, 1]  # out of order: smallest bucket, not "first"
    assert gap_buckets(np.zeros(0, dtype=np.int64), None, spec).tolist() == []


def test_hour_buckets_hand_computed() -> None:
    spec = FeatureSpec()  # UTC+8
    ts = np.array([0, 15 * _HOUR + 59 * 60 * _SEC, 16 * _HOUR, 2 * _DAY + 1 * _HOUR])
    # local 08:00 -> 9, 23:59 -> 24, 00:00 -> 1, 09:00 -> 10
    assert hour_buckets(ts, spec).tolist() == [9, 24, 1, 10]
    assert hour_buckets(np.array([0]), FeatureSpec(hour_offset_h=0)).tolist() == [1]


def test_age_buckets_hand_computed() -> None:
    spec = FeatureSpec()  # age edges (60, 300, 900, 1800, 3600, 3h, 8h, 1d, 2d, 4d) seconds
    ages_s = np.array([-5, 0, 59.999, 60, 299, 300, 3600, 86400, 4 * 86400, 400 * 86400])
    expected = [1, 1, 1, 2, 2, 3, 6, 9, 11, 11]
    assert age_buckets((ages_s * _SEC).astype(np.int64), spec).tolist() == expected
    assert max(expected) == spec.n_age_buckets - 1


@pytest.mark.parametrize(
    ("price", "bucket"),
    [(None, 0), (0.0, 1), (0.99, 1), (1.0, 2), (30.0, 5), (99.99, 6), (100.0, 7), (10000.0, 12), (1e9, 12)],
)
def test_price_buckets_hand_computed(price: float | None, bucket: int) -> None:
    spec = FeatureSpec(text_tokens=1)  # edges 1, 5, 10, 20, 50, 100, 200, 500, 1000, 3000, 10000
    encoder = EventEncoder(spec, Vocabulary(["c"]), Vocabulary(["i"]))
    event = Event(event_id="e", user_id="u", ts=0, type="view", category_id="c", price=price)
    assert int(encoder.static_row(event)[StaticColumn.PRICE]) == bucket
    assert bucket < spec.n_price_buckets


def test_static_row_columns() -> None:
    spec = FeatureSpec(text_tokens=2, text_buckets=64)
    encoder = EventEncoder(spec, Vocabulary(["c1", "c2"]), Vocabulary(["i1"]))
    review = Event(event_id="e", user_id="u", ts=0, type="review", item_id="i404", text="质量 很好", rating=4)
    row = encoder.static_row(review)
    assert row.dtype == np.int32 and row.shape == (spec.static_width,)
    assert row[StaticColumn.TYPE] == TYPE_INDEX["review"]
    assert row[StaticColumn.CATEGORY] == PAD  # no category
    assert row[StaticColumn.ITEM] == OOV  # unseen item
    assert row[StaticColumn.RATING] == 4
    assert row[StaticColumn.TEXT :].tolist() == text_token_ids("质量 很好", 2, 64)
    search = Event(event_id="s", user_id="u", ts=0, type="search", query="质量", text="ignored for a search")
    assert encoder.static_row(search)[StaticColumn.TEXT :].tolist() == [hash_token("质量", 64), 0]


# --- text tokens ------------------------------------------------------------------------------------


def test_hash_token_is_crc32_and_pinned() -> None:
    # Pinned values: changing the hash silently breaks every deployed model's text embeddings.
    assert hash_token("手机", 4096) == zlib.crc32("手机".encode()) % 4095 + 1 == 9
    assert text_token_ids("蓝牙耳机 降噪，续航好！IPhone", 5, 4096) == [2297, 2209, 2645, 4036, 2432]


def test_text_tokens_segment_lowercase_dedupe_and_pad() -> None:
    assert segment("蓝牙耳机 降噪，续航好！IPhone") == ("蓝牙", "耳机", "降噪", "续航", "好", "iphone")
    assert text_token_ids("IPhone", 2, 4096) == text_token_ids("iphone", 2, 4096)
    assert text_token_ids("好 好 好", 3, 4096) == [hash_token("好", 4096), 0, 0]
    assert text_token_ids("", 2, 4096) == [0, 0]
    assert text_token_ids("！？。", 2, 4096) == [0, 0]
    assert text_token_ids("蓝牙耳机 降噪，续航好！IPhone", 3, 4096) == [2297, 2209, 2645]
    # every word lands in 1..buckets-1 (0 is padding), and colliding words count once
    assert {hash_token(f"w{i}", 16) for i in range(500)} == set(range(1, 16))
    ids = text_token_ids(" ".join(f"w{i}" for i in range(40)), 40, 16)
    assert sorted(t for t in ids if t) == list(range(1, 16)) and ids[15:] == [0] * 25


def test_load_segmenter_loads_the_dictionary_before_any_text(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream.features import text

    monkeypatch.setattr(text, "_tokenizer", None)  # as in a fresh worker process
    text.load_segmenter()
    assert text._tokenizer is not None and text._tokenizer.initialized


def test_text_tokens_are_stable_across_processes() -> None:
    """Python's own str hash is salted per process; the featurizer must not depend on it."""
    texts = ["蓝牙耳机 降噪", "电池不耐用，发热严重", "wireless earbuds", "连衣裙 夏季 2024"]
    code = (
        "import json,sys\nfrom stream.features.text import text_token_ids\n"
        "print(json.dumps([text_token_ids(t, 5, 4096) for t in json.loads(sys.argv[1])]))"
    )
    here = [text_token_ids(t, 5, 4096) for t in texts]
    for seed in ("1", "987654"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(texts)],
            cwd=_REPO, env=env, capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        assert json.loads(out.stdout) == here


# --- vocabularies -----------------------------------------------------------------------------------


def test_vocabulary_build_min_count_order_and_oov() -> None:
    vocab = Vocabulary.build(["b", "a", "a", "c", "b", "a", "d"], min_count=2)
    assert vocab.tokens == ("a", "b")  # most frequent first
    assert [vocab.index(t) for t in ("a", "b", "c", None)] == [2, 3, OOV, PAD]
    assert len(vocab) == 4 and "a" in vocab and "c" not in vocab
    assert Vocabulary.build(["x", "y", "y"]).tokens == ("y", "x")
    assert Vocabulary.build(["x", "y"]).tokens == ("x", "y")  # ties by first appearance
    assert Vocabulary.build(["a", "b", "b", "c", "c", "c"], max_size=2).tokens == ("c", "b")


def test_vocabulary_save_load_round_trip(tmp_path: Path) -> None:
    vocab = Vocabulary(["4756105", "手机", "a b", "", "é"])
    path = tmp_path / "v.json"
    vocab.save(path)
    loaded = Vocabulary.load(path)
    assert loaded == vocab and hash(loaded) == hash(vocab)
    assert [loaded.index(t) for t in vocab.tokens] == [2, 3, 4, 5, 6]
    assert loaded.lookup(np.array([3, 2])) == ["手机", "4756105"]
    assert "手机" in path.read_text(encoding="utf-8")  # readable, not escaped


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a vocabulary file"),
        ('{"words": ["a"]}', "not a vocabulary file"),
        ('["a", "b"]', "not a vocabulary file"),
        ('{"tokens": "ab"}', "must be a list of strings"),
        ('{"tokens": ["a", 1]}', "must be a list of strings"),
        ('{"tokens": ["a", "a"]}', "unique"),
        ("", "not a vocabulary file"),
    ],
)
def test_vocabulary_load_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(VocabularyFormatError, match=message):
        Vocabulary.load(path)


def test_vocabulary_load_rejects_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(VocabularyFormatError, match="not a vocabulary file"):
        Vocabulary.load(tmp_path / "absent.json")
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"tokens": ["caf\xe9"]}')
    with pytest.raises(VocabularyFormatError, match="not a vocabulary file"):
        Vocabulary.load(bad)
