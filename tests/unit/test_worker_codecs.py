"""Window row and model state codecs of the worker."""

from __future__ import annotations

import numpy as np
import pytest
from support.models import CATEGORIES, ITEMS, generated_histories

from stream.contracts import Event
from stream.features import EventEncoder, FeatureSpec, Vocabulary
from stream.worker.exceptions import CodecError
from stream.worker.state_codec import ModelState, decode_state, encode_state, encode_states
from stream.worker.window_codec import MAX_WORDS, decode_rows, encode_row, static_rows


def _events() -> list[Event]:
    events = [e for history in generated_histories(users=6, seed=3) for e in history]
    # Edge cases: no optional fields, an unknown category, long text with repeated words.
    events.append(Event(event_id="x1", user_id="u", ts=1_700_000_000_000, type="view"))
    events.append(Event(event_id="x2", user_id="u", ts=1_700_000_000_001, type="review",
                        text="好 好 好 手机 电池 " * 20, rating=5, category_id="never-seen"))  # fmt: skip
    return events


@pytest.mark.parametrize("text_tokens", [1, 3, 5])
def test_static_rows_from_stored_rows_equal_the_featurizer(text_tokens: int) -> None:
    encoder = EventEncoder(
        FeatureSpec(text_tokens=text_tokens, text_buckets=512), Vocabulary(CATEGORIES), Vocabulary(ITEMS)
    )
    events = _events()
    rows = decode_rows([encode_row(e) for e in events])
    np.testing.assert_array_equal(static_rows(rows, encoder), encoder.static_rows(events))


def test_row_keeps_no_raw_text_and_bounded_words() -> None:
    text = " ".join(f"词{i}" for i in range(100))
    blob = encode_row(Event(event_id="e", user_id="u", ts=1, type="review", text=text, rating=1))
    (row,) = decode_rows([blob])
    assert len(row.words) == MAX_WORDS
    assert text.encode() not in blob


def test_corrupt_row_is_a_codec_error() -> None:
    with pytest.raises(CodecError):
        decode_rows([b"\xff\x00garbage"])


def _state(seq: int = 7) -> ModelState:
    rng = np.random.default_rng(seq)
    return ModelState(
        version="v1", seq=seq,
        h=rng.standard_normal(16).astype(np.float32), c=rng.standard_normal(16).astype(np.float32),
        cat=np.arange(12, dtype=np.int32), kind=np.arange(12, dtype=np.int8) % 7,
        ts=np.arange(12, dtype=np.int64) * 1_000 + 1_700_000_000_000,
    )  # fmt: skip


def test_state_roundtrip_is_exact() -> None:
    state = _state()
    back = decode_state(encode_state(state))
    assert (back.version, back.seq) == ("v1", 7)
    for name in ("h", "c", "cat", "kind", "ts"):
        np.testing.assert_array_equal(getattr(back, name), getattr(state, name))


def test_batch_state_encoding_matches_single() -> None:
    states = [_state(3), _state(4)]
    blobs = encode_states(
        "v1", [3, 4], np.stack([s.h for s in states]), np.stack([s.c for s in states]),
        np.stack([s.cat for s in states]), np.stack([s.kind for s in states]), np.stack([s.ts for s in states]),
    )  # fmt: skip
    assert blobs == [encode_state(s) for s in states]


@pytest.mark.parametrize("blob", [b"", b"\x93\x01\x02", encode_state(_state())[:-5]])
def test_bad_state_blob_is_a_codec_error(blob: bytes) -> None:
    with pytest.raises(CodecError):
        decode_state(blob)
