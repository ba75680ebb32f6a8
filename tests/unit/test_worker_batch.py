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
from stream.store import Fenced, MemoryWindowStore, OwnedStore
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


def _processor(
    model: LoadedModel, settings: Settings | None = None, backing: MemoryWindowStore | None = None
) -> BatchProcessor:
    settings = settings or Settings(_env_file=None)  # type: ignore[call-arg]
    store = OwnedStore.from_settings(settings, backing or MemoryWindowStore.from_settings(settings))
    return BatchProcessor(settings, store=store, model=lambda: model, metrics=WorkerMetrics())


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


async def test_holding_users_changes_no_prediction(model: LoadedModel) -> None:
    records = _records()
    held = await _run(_processor(model), records, 16)
    none = Settings(_env_file=None, worker_max_held_users=0)  # type: ignore[call-arg]
    loaded = await _run(_processor(model, none), records, 16)
    assert _comparable(loaded) == _comparable(held)


async def test_a_fenced_processor_persists_nothing_and_the_new_owner_state_survives(model: LoadedModel) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    backing = MemoryWindowStore.from_settings(settings)
    records = _records()
    a, b = _processor(model, settings, backing), _processor(model, settings, backing)
    await a.partitions_assigned({("events", 0)})
    await _run(a, records[:40], 20)
    delayed = await a.process(records[40:60])  # A computed a batch, but is slow to write it
    await b.partitions_assigned({("events", 0)})  # the partition moved: B's epoch is higher
    await _run(b, records[40:80], 20)
    users = {r.key.decode() for r in records[40:60] if r.key}

    def stored() -> dict[str, tuple[list[int], int | None]]:
        return {u: (w.seqs, w.state_seq) for u in users if (w := backing._users.get(u)) is not None}

    before = stored()
    assert before and all(state_seq is not None for _, state_seq in before.values())
    with pytest.raises(Fenced) as refused:
        await a.persist(delayed)
    assert refused.value.partitions == {0}
    assert isinstance(a.store, OwnedStore) and len(a.store.held) == 0  # A dropped the partition's users
    assert stored() == before
