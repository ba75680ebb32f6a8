"""The batch processor without servers: a real small model, the in-memory store, plain records."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import pytest
from support.models import generated_histories, publish_model
from support.streams import interleaved

from stream.config import Settings
from stream.contracts import DeadLetter, Prediction, encode_event
from stream.registry import LoadedModel, ModelRegistry
from stream.store import MemoryWindowStore
from stream.worker.batch import BatchProcessor
from stream.worker.metrics import WorkerMetrics


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    root = tmp_path_factory.mktemp("registry")
    publish_model(root, "v1", seed=3)
    return LoadedModel.load(ModelRegistry(root), "v1")


def _processor(model: LoadedModel, settings: Settings | None = None) -> BatchProcessor:
    settings = settings or Settings(_env_file=None)  # type: ignore[call-arg]
    return BatchProcessor(
        settings, store=MemoryWindowStore.from_settings(settings), model=lambda: model, metrics=WorkerMetrics()
    )


def _records() -> list[Record]:
    events = interleaved(generated_histories(users=12, seed=5, max_len=30))
    return [Record("events", 0, i, e.user_id.encode(), encode_event(e)) for i, e in enumerate(events)]


async def _run(processor: BatchProcessor, records: list[Record], size: int) -> list[Prediction]:
    out: list[Prediction] = []
    for start in range(0, len(records), size):
        batch = await processor.process(records[start : start + size])
        await processor.persist(batch)
        out += [msgspec.json.decode(value, type=Prediction) for _, _, value in batch.records]
    return out


def _comparable(predictions: list[Prediction]) -> list[tuple[object, ...]]:
    # predicted_at is the wall clock of the batch: everything else must be equal.
    return [
        (p.event_id, p.history_len, p.purchase_intent, [(d.category_id, d.score) for d in p.demand])
        for p in predictions
    ]


async def test_batches_of_any_size_predict_what_single_events_do(model: LoadedModel) -> None:
    records = _records()
    single = await _run(_processor(model), records, 1)
    batched = await _run(_processor(model), records, 64)
    assert len(single) == len(records)
    assert _comparable(batched) == _comparable(single)


async def test_a_replayed_batch_predicts_the_same_and_writes_nothing(model: LoadedModel) -> None:
    processor, records = _processor(model), _records()[:50]
    first = await processor.process(records)
    await processor.persist(first)
    again = await processor.process(records)
    assert again.writes == []
    decode = [msgspec.json.decode(v, type=Prediction) for _, _, v in again.records]
    assert _comparable(decode) == _comparable([msgspec.json.decode(v, type=Prediction) for _, _, v in first.records])


async def test_an_invalid_record_becomes_a_dead_letter(model: LoadedModel) -> None:
    processor = _processor(model)
    batch = await processor.process([Record("events", 2, 7, b"k", b"{not json")])
    assert batch.predicted_ts == [] and batch.writes == []
    [(topic, key, value)] = batch.records
    letter = msgspec.json.decode(value, type=DeadLetter)
    assert (topic, key, letter.source_partition, letter.source_offset) == (processor.settings.topic_dlq, b"k", 2, 7)
