"""What the worker shell does with a batch whose write-behind was fenced (no broker needed)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import TopicPartition

from stream.config import Settings
from stream.store import Fenced
from stream.worker import Worker


@dataclass(frozen=True)
class Record:
    offset: int


@dataclass
class FakeConsumer:
    owned: set[TopicPartition]
    paused_tps: set[TopicPartition] = field(default_factory=set)
    seeks: dict[TopicPartition, int] = field(default_factory=dict)

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_tps.update(tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset


def test_a_fenced_batch_pauses_the_lost_partition_and_rereads_the_rest() -> None:
    worker = Worker(Settings(_env_file=None))  # type: ignore[call-arg]
    lost, kept, gone = TopicPartition("events", 1), TopicPartition("events", 2), TopicPartition("events", 3)
    consumer = FakeConsumer({lost, kept})
    batch = {lost: [Record(10), Record(11)], kept: [Record(40), Record(41)], gone: [Record(7)]}
    worker._fenced(consumer, batch, Fenced(frozenset({1}), 2))  # type: ignore[arg-type]
    assert consumer.paused_tps == {lost}
    assert consumer.seeks == {kept: 40}  # nothing of the batch was published: read again
    assert worker.metrics.fenced._value.get() == 1
    assert worker.records_done == 0
