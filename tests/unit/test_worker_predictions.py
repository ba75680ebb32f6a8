"""The batched prediction encoder gives exactly the Prediction the per-struct path gives."""

from __future__ import annotations

import msgspec
import numpy as np
from aiokafka.partitioner import DefaultPartitioner

from stream.contracts import CategoryScore, Event, Prediction
from stream.worker.predictions import PredictionEncoder
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
    clipped = np.clip(scores, 0.0, 1.0).tolist()
    for i, value in enumerate(values):
        decoded = msgspec.json.decode(value, type=Prediction)
        expected = Prediction(
            user_id=events[i].user_id,
            event_id=events[i].event_id,
            event_ts=events[i].ts,
            predicted_at=123,
            model_version="v1",
            demand=[CategoryScore(c, s) for c, s in zip(ids[i], clipped[i], strict=True)],
            purchase_intent=float(np.clip(intent[i], 0, 1)),
            history_len=int(history[i]),
        )
        assert decoded == expected


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
