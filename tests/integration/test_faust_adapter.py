"""The faust adapter (tools/faust_app.py) against the real tansu broker and a private Redis.

It runs the native worker's batch processor, so its predictions must be the worker's; its
offsets are faust's to commit, so a failed batch must stay uncommitted and be replayed.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from support.models import generated_histories, publish_model
from support.streams import (
    WAIT_S,
    Running,
    TopicReader,
    dead_letters,
    event_payloads,
    interleaved,
    predicted_ids,
    predicts_all,
    produce,
    produce_located,
    worker_env,
)

from stream.config import Settings
from stream.contracts import Prediction
from stream.registry import ModelRegistry
from tools.devinfra.broker import create_topics
from tools.faust_app import BatchAbandoned, FaustAdapter

INVALID = [b"not json", b'{"user_id":"u","ts":1700000000000,"type":"view"}',
           b'{"event_id":"e","user_id":"u","ts":1700000000000,"type":"teleport"}']  # fmt: skip


class RunningAdapter:
    """A faust adapter running as a task in this event loop."""

    def __init__(self, settings: Settings) -> None:
        self.adapter = FaustAdapter(settings)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.adapter.run(self.stop))

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            if self.task.done():
                raise AssertionError(f"adapter exited while waiting for {what}: {self.task!r}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, WAIT_S)


@pytest.fixture
async def registry(settings_factory: Any) -> AsyncIterator[ModelRegistry]:
    root = settings_factory().model_registry
    await asyncio.to_thread(publish_model, root, "v1", seed=1)
    yield ModelRegistry(root)


async def committed(settings: Settings) -> dict[int, int]:
    """The adapter group's committed offsets of the events topic (0 where none)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=settings.consumer_group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = range(settings.topic_partitions)
        return {p: (await consumer.committed(TopicPartition(settings.topic_events, p))) or 0 for p in partitions}
    finally:
        await consumer.stop()


def by_event(values: list[bytes]) -> dict[str, Prediction]:
    return {p.event_id: p for p in (msgspec.json.decode(v, type=Prediction) for v in values)}


async def test_same_predictions_as_the_native_worker_and_located_dead_letters(
    settings_factory: Any, registry: ModelRegistry
) -> None:
    native = settings_factory(batch_max_size=16)
    faust = native.model_copy(
        update={
            "consumer_group": native.consumer_group + "-faust",
            "redis_key_prefix": native.redis_key_prefix + "-faust",
            "topic_predictions": native.topic_predictions + "-faust",
            "topic_dlq": native.topic_dlq + "-faust",
        }
    )
    await create_topics(native.kafka_bootstrap, {faust.topic_predictions: native.topic_partitions, faust.topic_dlq: 1})
    events = interleaved(generated_histories(users=8, seed=31, max_len=20))
    payloads: list[tuple[bytes | None, bytes | None]] = list(event_payloads(events))
    for n, bad in enumerate(INVALID):
        payloads.insert(5 * n + 2, (f"bad{n}".encode(), bad))
    located = await produce_located(native.kafka_bootstrap, native.topic_events, payloads)
    where = {value: place for (_, value), place in zip(payloads, located, strict=True)}

    worker = Running(native)
    reader = TopicReader(native.kafka_bootstrap, native.topic_predictions)
    expected = by_event(await reader.until(predicts_all(events)))
    await reader.close()
    await worker.close()

    adapter = RunningAdapter(faust)
    reader = TopicReader(faust.kafka_bootstrap, faust.topic_predictions)
    got = by_event(await reader.until(predicts_all(events)))
    await reader.close()
    letters_reader = TopicReader(faust.kafka_bootstrap, faust.topic_dlq)
    letters = dead_letters(await letters_reader.until(lambda values: len(values) >= len(INVALID)))
    await letters_reader.close()
    await adapter.until(lambda: adapter.adapter.records_done >= len(payloads), "every record acknowledged")
    assert await adapter.adapter.readiness() == {"model": True, "redis": True, "kafka": True}
    await adapter.close()

    assert set(got) == set(expected) == {e.event_id for e in events}
    for event_id, prediction in got.items():
        reference = expected[event_id]
        assert prediction.model_version == reference.model_version == "v1"
        assert [s.category_id for s in prediction.demand] == [s.category_id for s in reference.demand]
        assert [s.score for s in prediction.demand] == pytest.approx([s.score for s in reference.demand], abs=1e-5)
        assert prediction.purchase_intent == pytest.approx(reference.purchase_intent, abs=1e-5)
        assert prediction.history_len == reference.history_len
    assert len(letters) == len(INVALID)  # one dead letter per invalid event
    for letter in letters:
        payload = base64.b64decode(letter.payload_b64)
        assert letter.source_topic == faust.topic_events
        assert (letter.source_partition, letter.source_offset) == where[payload]
    assert sum((await committed(faust)).values()) == len(payloads)
    samples = adapter.adapter.metrics.registry
    assert samples.get_sample_value("demandstream_worker_predictions_out_total") == len(events)


async def test_a_failed_batch_is_not_committed_and_is_replayed_after_a_restart(
    settings_factory: Any, registry: ModelRegistry
) -> None:
    settings = settings_factory(batch_max_size=8, batch_linger_ms=50)
    events = interleaved(generated_histories(users=6, seed=41, max_len=12))
    first, rest = events[:8], events[8:]
    await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(first))

    failing = RunningAdapter(settings)
    await failing.until(lambda: failing.adapter.records_done >= len(first), "the first events")
    processor = failing.adapter.processor
    real_process = processor.process
    failed: list[str] = []
    failed_at: dict[int, int] = {}  # partition -> the failed batch's first offset there

    async def fail_once(records: Any) -> Any:
        # An unexpected bug in the middle of a batch, injected once (e.g. a model that raises).
        if not failed:
            failed.extend(msgspec.json.decode(r.value)["event_id"] for r in records)
            for r in records:
                failed_at[r.partition] = min(failed_at.get(r.partition, r.offset), r.offset)
            raise RuntimeError("injected batch failure")
        return await real_process(records)

    processor.process = fail_once  # type: ignore[method-assign]
    await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(rest))
    with pytest.raises(BatchAbandoned, match="injected batch failure"):
        await asyncio.wait_for(failing.task, WAIT_S)
    assert failed and failing.adapter.records_done == len(first)  # it stopped at the failed batch

    offsets = await committed(settings)
    assert len(first) <= sum(offsets.values()) < len(events)
    assert all(offsets[partition] <= offset for partition, offset in failed_at.items())  # none past the failure

    restarted = RunningAdapter(settings)
    reader = TopicReader(settings.kafka_bootstrap, settings.topic_predictions)
    values = await reader.until(predicts_all(events))
    await reader.close()
    left = len(events) - sum(offsets.values())
    await restarted.until(lambda: restarted.adapter.records_done >= left, "the uncommitted records")
    await restarted.close()
    assert set(failed) <= predicted_ids(values)  # the failed batch's events were replayed and predicted
    assert sum((await committed(settings)).values()) == len(events)


@pytest.mark.partitions(4)
async def test_two_adapters_in_one_group_share_the_partitions_and_lose_no_event(
    settings_factory: Any, registry: ModelRegistry
) -> None:
    settings = settings_factory(batch_max_size=16)
    events = interleaved(generated_histories(users=16, seed=51, max_len=16))
    half = len(events) // 2
    await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events[:half]))

    one = RunningAdapter(settings)
    await one.until(lambda: one.adapter.records_done > 0, "the first adapter's first batch")
    two = RunningAdapter(settings)
    await two.until(lambda: bool(two.adapter.assigned), "the second adapter's partitions")
    await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events[half:]))

    reader = TopicReader(settings.kafka_bootstrap, settings.topic_predictions)
    values = await reader.until(predicts_all(events))
    await reader.close()
    await two.until(lambda: one.adapter.records_done + two.adapter.records_done >= len(events), "every record done")
    assigned_one, assigned_two = set(one.adapter.assigned), set(two.adapter.assigned)
    await one.close()
    await two.close()

    assert predicted_ids(values) == {e.event_id for e in events}
    assert assigned_one and assigned_two and not assigned_one & assigned_two  # the group split the partitions
    assert two.adapter.records_done > 0
    assert sum((await committed(settings)).values()) == len(events)


async def test_the_faust_worker_command_predicts_and_stops_cleanly_on_sigterm(
    settings_factory: Any, registry: ModelRegistry, tmp_path: Path
) -> None:
    # Linger 0: a last batch smaller than the batch size must still go (faust reads within=0 as "no timeout").
    settings = settings_factory(batch_max_size=16, batch_linger_ms=0)
    events = interleaved(generated_histories(users=4, seed=61, max_len=10))
    assert len(events) % 16
    await produce(settings.kafka_bootstrap, settings.topic_events, event_payloads(events))
    command = [str(Path(sys.executable).parent / "demandstream"), "faust-worker"]
    log_path = tmp_path / "faust-worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=worker_env(settings), stdout=log, stderr=subprocess.STDOUT)
        try:
            reader = TopicReader(settings.kafka_bootstrap, settings.topic_predictions)
            values = await reader.until(predicts_all(events))
            await reader.close()
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, WAIT_S)
        finally:
            if process.poll() is None:
                process.kill()
    output = log_path.read_text(encoding="utf-8", errors="replace")
    assert code == 0, output
    assert predicted_ids(values) == {e.event_id for e in events}
    assert "faust adapter started" in output and "Traceback" not in output, output
