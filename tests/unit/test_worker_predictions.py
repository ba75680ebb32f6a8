"""The batched prediction encoder gives exactly the Prediction the per-struct path gives."""

from __future__ import annotations

import msgspec
import numpy as np
from aiokafka.partitioner import DefaultPartitioner

from stream.contracts import CategoryScore, Event, Prediction
from stream.worker.predictions import PredictionEncoder, round_significant
from stream.worker.publish import BatchPublisher


def test_encoder_matches_struct_path() -> None:
    targets = ["", "", "c1", 'we"ird\\id', "类目"]
    rng = np.random.default_rng(3)
    n, k = 7, 3
    categories = rng.integers(0, len(targets), size=(n, k))
    scores = rng.random((n, k)).astype(np.float32)
    scores[0, 0] = 1.5  # clipped to 1
    scores[1, 1] = 1e-7
    intent = rng.random(n).astype(np.float32)
    history = rng.integers(1, 50, size=n)
    events = [Event(event_id=f"e{i}", user_id=f"u{i % 3}", ts=1000 + i, type="view") for i in range(n)]
    values = PredictionEncoder("v1", targets).encode(events, categories, scores, intent, history, 123)
    ids = np.asarray(targets, dtype=object)[categories].tolist()
    clipped = round_significant(np.clip(scores, 0.0, 1.0)).tolist()
    for i, value in enumerate(values):
        decoded = msgspec.json.decode(value, type=Prediction)
        expected = Prediction(
            user_id=events[i].user_id,
            event_id=events[i].event_id,
            event_ts=events[i].ts,
            predicted_at=123,
            model_version="v1",
            demand=[CategoryScore(c, s) for c, s in zip(ids[i], clipped[i], strict=True)],
            purchase_intent=float(round_significant(np.clip(intent[i : i + 1], 0, 1))[0]),
            history_len=int(history[i]),
        )
        assert decoded == expected


def test_scores_keep_six_significant_digits() -> None:
    scores = np.asarray([0.0, 1.0, 0.123456789, 1.23456789e-7, 0.5], dtype=np.float64)
    assert round_significant(scores).tolist() == [0.0, 1.0, 0.123457, 1.23457e-7, 0.5]
    events = [Event(event_id="e0", user_id="u0", ts=1, type="view")]
    value = PredictionEncoder("v", ["a", "b"]).encode(
        events,
        np.asarray([[0, 1]]),
        np.asarray([[0.123456789, 2.0]], dtype=np.float32),
        np.asarray([0.3333333]),
        np.asarray([4]),
        1,
    )[0]
    assert b'"score":0.123457}' in value and b'"score":1.0}' in value and b'"purchase_intent":0.333333' in value


def test_encoder_empty_batch() -> None:
    empty = np.zeros((0, 3))
    assert PredictionEncoder("v", ["", ""]).encode([], empty.astype(np.int64), empty, empty[:, 0], empty[:, 0], 1) == []


def test_publisher_partitions_like_send() -> None:
    publisher = BatchPublisher(producer=None)  # type: ignore[arg-type]  # partitioning needs no producer
    partitions = [0, 1, 2, 3]
    for i in range(200):
        key = f"user{i}".encode()
        expected = DefaultPartitioner()(key, partitions, partitions)
        assert publisher._partition_of("t", key, partitions) == expected
        assert publisher._partition_of("t", key, partitions) == expected  # cached
    assert publisher._partition_of("t", b"user7", [0, 1]) == DefaultPartitioner()(b"user7", [0, 1], [0, 1])
