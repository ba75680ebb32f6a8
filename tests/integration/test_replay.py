"""`demandstream replay` against the real broker: event-time order, contract validity, and one
prediction per valid event through a running worker."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec
import pytest
from support.models import publish_model
from support.streams import read_topic

from stream.contracts import Event, EventDecoder, Prediction, encode_event
from stream.worker import Worker
from tools.demo.replay import events_in_time_order, replay_file
from tools.simulate import ShopperSimulator

TAOBAO_SAMPLE = (
    Path(__file__).resolve().parents[3] / "shared/data/taobao_userbehavior_head100k/UserBehavior_head100k.csv"
)
TAOBAO_ROWS = 2000
WAIT_S = 90.0


def taobao_head(tmp_path: Path, rows: int = TAOBAO_ROWS) -> Path:
    head = tmp_path / "UserBehavior_head.csv"
    with TAOBAO_SAMPLE.open("rb") as src:
        head.write_bytes(b"".join(src.readline() for _ in range(rows)))
    return head


def write_jsonl(path: Path, events: list[Event]) -> Path:
    path.write_bytes(b"".join(encode_event(e) + b"\n" for e in events))
    return path


def test_an_ordered_file_is_streamed_in_file_order(tmp_path: Path) -> None:
    events = list(islice(ShopperSimulator(seed=3, users=20), 300))
    ordered, bad_rows = events_in_time_order(write_jsonl(tmp_path / "e.jsonl", events), "jsonl")
    assert not isinstance(ordered, list)
    assert list(ordered) == events
    assert bad_rows.count == 0


def test_the_taobao_sample_is_grouped_by_user_and_comes_out_sorted(tmp_path: Path) -> None:
    ordered, _ = events_in_time_order(taobao_head(tmp_path), "taobao")
    timestamps = [e.ts for e in ordered]
    assert len(timestamps) == TAOBAO_ROWS
    assert timestamps == sorted(timestamps)


@pytest.mark.partitions(1)  # one partition: the topic's order is exactly the publish order
async def test_replay_publishes_an_unordered_file_in_event_time_order(settings_factory: Any, tmp_path: Path) -> None:
    settings = settings_factory()
    events = list(islice(ShopperSimulator(seed=5, users=30), 500))
    shuffled = events[:]
    random.Random(0).shuffle(shuffled)
    path = write_jsonl(tmp_path / "shuffled.jsonl", shuffled)

    summary = await replay_file(settings, path, "jsonl")

    values = await read_topic(settings.kafka_bootstrap, settings.topic_events, len(events))
    published = [msgspec.json.decode(v, type=Event) for v in values]
    assert summary.sent == len(published) == len(events)
    assert [e.ts for e in published] == sorted(e.ts for e in events)
    assert sorted(e.event_id for e in published) == sorted(e.event_id for e in events)


@pytest.mark.partitions(1)
async def test_replay_at_a_speed_factor_follows_event_time(settings_factory: Any, tmp_path: Path) -> None:
    start = 1_700_000_000_000
    events = [Event(f"e{i}", f"u{i % 3}", start + i * 1000, "view", category_id="1001") for i in range(5)]
    summary = await replay_file(settings_factory(), write_jsonl(tmp_path / "e.jsonl", events), "jsonl", speed=4.0)
    # 4 s of event time at 4x: at least 1 s of wall time (a lower bound only: never a timed upper bound).
    assert summary.sent == 5
    assert summary.elapsed_s >= 1.0


@pytest.mark.partitions(1)
async def test_replayed_taobao_rows_pass_the_event_contract(settings_factory: Any, tmp_path: Path) -> None:
    settings = settings_factory()
    summary = await replay_file(settings, taobao_head(tmp_path), "taobao")

    values = await read_topic(settings.kafka_bootstrap, settings.topic_events, summary.sent)
    decoder = EventDecoder(min_ts_ms=settings.min_event_ts_ms, max_bytes=settings.max_event_bytes)
    decoded = [decoder.decode(v) for v in values]
    assert summary.sent == len(decoded) == TAOBAO_ROWS
    assert all(isinstance(e, Event) for e in decoded), [e for e in decoded if not isinstance(e, Event)][:3]
    assert [e.ts for e in decoded if isinstance(e, Event)] == sorted(e.ts for e in decoded if isinstance(e, Event))


async def test_every_replayed_taobao_event_gets_exactly_one_prediction(settings_factory: Any, tmp_path: Path) -> None:
    settings = settings_factory()
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    replayed, _ = events_in_time_order(taobao_head(tmp_path), "taobao")
    expected_ids = {e.event_id for e in replayed}
    worker, stop = Worker(settings), asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        summary = await replay_file(settings, taobao_head(tmp_path), "taobao")
        values = await read_topic(settings.kafka_bootstrap, settings.topic_predictions, summary.sent, settle_s=2.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)

    per_event = Counter(msgspec.json.decode(v, type=Prediction).event_id for v in values)
    assert set(per_event) == expected_ids
    assert max(per_event.values()) == 1, per_event.most_common(3)
