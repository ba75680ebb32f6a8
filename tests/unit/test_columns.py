"""The columnar data path gives exactly what the per-event reference path gives: cleaning,
vocabularies, flat arrays, model inputs (by the shared featurizer) and the leave-user-out inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.models import generated_histories

from stream.contracts import Event
from stream.features import EventEncoder, FeatureSpec, Vocabulary
from training.data import UserSequence, clean_events, encode_sequences, training_tokens
from training.data.clean_columns import CleanedEvents, clean_columns
from training.data.columns import build_columns
from training.data.encode_columns import CodedVocabulary, code_vocabulary, encode_columns, train_rows
from training.histories import FlatHistories, collate, flat_histories, previous_other_flat
from training.model import previous_other
from training.sequences import encode_history
from training.split import TimeSplit

SPEC = FeatureSpec(window=7, text_tokens=3, text_buckets=256)


def _raw_events(seed: int = 5) -> list[Event]:
    """Generated shoppers, interleaved out of order, with exact duplicates and out-of-range rows."""
    rng = np.random.default_rng(seed)
    events = [e for h in generated_histories(users=40, seed=seed, max_len=40) for e in h]
    events += [events[i] for i in rng.choice(len(events), size=60)]  # duplicates (same id too)
    events += [Event(f"x{i}", events[i].user_id, 5, "view", category_id="c1") for i in range(5)]  # too early
    events.append(Event("t1", "u1", events[3].ts, events[3].type, item_id="i1", category_id="c1"))  # a ts tie
    return [events[i] for i in rng.permutation(len(events))]


@pytest.fixture(scope="module")
def both() -> tuple[list[UserSequence], CleanedEvents, TimeSplit]:
    events = _raw_events()
    bounds = (1_000, None)
    sequences, summary = clean_events(events, ts_bounds=bounds)
    cleaned, col_summary = clean_columns(build_columns(events, chunk_rows=97), ts_bounds=bounds)
    assert col_summary == summary
    first = min(s.events[0].ts for s in sequences)
    last = max(s.events[-1].ts for s in sequences)
    return sequences, cleaned, TimeSplit.from_fractions(first, last, 0.7, 0.85)


def _fields(e: Event) -> tuple[object, ...]:
    return (e.user_id, e.ts, e.type, e.item_id, e.category_id, e.query, e.text, e.rating, e.price)


def test_cleaning_on_columns_keeps_the_same_events_in_the_same_order(
    both: tuple[list[UserSequence], CleanedEvents, TimeSplit],
) -> None:
    sequences, cleaned, _ = both
    assert cleaned.users == len(sequences) > 30
    assert [cleaned.user_id(u) for u in range(cleaned.users)] == [s.user_id for s in sequences]
    histories = cleaned.histories()
    assert [[_fields(e) for e in h] for h in histories] == [[_fields(e) for e in s.events] for s in sequences]
    assert [_fields(e) for e in histories[-1]] == [_fields(e) for e in sequences[-1].events]


def _vocabs(cleaned: CleanedEvents, split: TimeSplit) -> tuple[CodedVocabulary, CodedVocabulary]:
    train, c = train_rows(cleaned, split), cleaned.columns
    return code_vocabulary(c.category, c.category_ids, train), code_vocabulary(c.item, c.item_ids, train, min_count=2)


def test_vocabularies_and_flat_arrays_equal_the_reference(
    both: tuple[list[UserSequence], CleanedEvents, TimeSplit],
) -> None:
    sequences, cleaned, split = both
    categories, items = _vocabs(cleaned, split)
    assert categories.vocab.tokens == Vocabulary.build(training_tokens(sequences, split, "category")).tokens
    assert items.vocab.tokens == Vocabulary.build(training_tokens(sequences, split, "item"), min_count=2).tokens
    assert 0 < len(items.vocab) < len(Vocabulary.build(training_tokens(sequences, split, "item")))
    expected = encode_sequences(sequences, categories.vocab, split, "category")
    got = encode_columns(cleaned, categories, split, "category")
    for name in ("starts", "user", "ts", "target", "etype", "period"):
        assert np.array_equal(getattr(got, name), getattr(expected, name)), name
    assert got.n_classes == expected.n_classes


@pytest.mark.parametrize("target", ["category", "item"])
def test_model_inputs_are_the_shared_featurizers(
    both: tuple[list[UserSequence], CleanedEvents, TimeSplit], target: str
) -> None:
    sequences, cleaned, split = both
    categories, items = _vocabs(cleaned, split)
    spec = FeatureSpec(window=SPEC.window, text_tokens=SPEC.text_tokens, text_buckets=SPEC.text_buckets,
                       target=target)  # type: ignore[arg-type]  # fmt: skip
    encoder = EventEncoder(spec, categories.vocab, items.vocab)
    reference = [encode_history(s.user_id, s.events, encoder, split) for s in sequences]
    flat = flat_histories(cleaned, spec, categories, items, split)
    stacked = FlatHistories.stack(reference, spec)
    for name in ("starts", "rows", "ts", "target", "target_period", "intent"):
        assert np.array_equal(getattr(flat, name), getattr(stacked, name)), name
    assert (flat.rows[:, 5:] > 0).any()  # texts and queries were featurized, not dropped
    users = [3, 0, 17]
    batch = collate(flat, users)
    for i, u in enumerate(users):
        h, n = reference[u], len(reference[u])
        assert np.array_equal(batch.steps[i, :n].numpy(), h.steps)
        for got, want in zip((batch.win_cat, batch.win_type, batch.win_age), (h.win_cat, h.win_type, h.win_age),
                             strict=True):  # fmt: skip
            assert np.array_equal(got[i, :n].numpy(), want)
        assert np.array_equal(batch.target[i, :n].numpy(), h.target)
        assert bool((batch.target_period[i, n:] == -1).all())
    other = previous_other_flat(flat.rows[:, 1 if target == "category" else 2], flat.starts, spec.window)
    want = np.concatenate([previous_other(torch.from_numpy(h.win_cat)).numpy() for h in reference])
    assert np.array_equal(other, want)
    assert (other > 0).any()


def test_select_takes_a_shard_of_users(both: tuple[list[UserSequence], CleanedEvents, TimeSplit]) -> None:
    _, cleaned, split = both
    categories, items = _vocabs(cleaned, split)
    flat = flat_histories(cleaned, SPEC, categories, items, split)
    shard = flat.select(np.arange(1, len(flat), 2))
    assert len(shard) == len(flat) // 2
    assert np.array_equal(shard.rows[: shard.starts[1]], flat.rows[flat.starts[1] : flat.starts[2]])
    assert shard.n_positions == int(flat.lengths[1::2].sum())


def test_columns_are_tens_of_bytes_per_event() -> None:
    events = _raw_events()
    columns = build_columns(events)
    assert len(columns) == len(events)
    assert columns.nbytes / len(columns) <= 34
