"""``demandstream retrain`` on a real (tansu) broker: it reads the events topic, trains on its last
days and registers the result as a shadow, never serving it; a model the gate refuses (here: a
serving model of another catalogue) is not shadowed and the command exits 3."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner
from support.models import publish_model

from stream.config import Settings, get_settings
from stream.contracts import Event, encode_event
from stream.registry import ModelRegistry
from tools.cli import main
from tools.demo.model import DemoTraining, write_training_events
from training.data import load_events
from training.retrain import write_last_days

pytestmark = pytest.mark.slow


class Topics(Protocol):
    events: str


@pytest.fixture
def demo_events(tmp_path: Path) -> list[Event]:
    path = tmp_path / "demo.jsonl"
    write_training_events(path, DemoTraining(events=2_000))
    return list(load_events(path, "jsonl"))


@pytest.fixture
def env(settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    settings = settings_factory()
    monkeypatch.setenv("DEMANDSTREAM_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("DEMANDSTREAM_TOPIC_EVENTS", settings.topic_events)
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


async def _publish(settings: Settings, events: list[Event]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send(settings.topic_events, encode_event(event), key=event.user_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


def _retrain(registry: Path, version: str, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["retrain", "--registry", str(registry), "--version", version, "--epochs", "2",
                                       "--hidden", "16", "--window", "10", "--no-progress", *extra])  # fmt: skip
    return result.exit_code, result.output


def test_last_days_are_counted_back_from_the_newest_event(tmp_path: Path) -> None:
    day = 86_400_000
    events = [Event(f"e{d}", "u", 1_700_000_000_000 + d * day, "view", category_id="c") for d in range(10)]
    read, kept = write_last_days(events, 3, tmp_path / "out.jsonl")
    assert (read, kept) == (10, 3)
    assert [e.event_id for e in load_events(tmp_path / "out.jsonl", "jsonl")] == ["e7", "e8", "e9"]


async def test_retrain_registers_a_shadow_or_exits_3_when_refused(
    env: Settings, topics: Topics, demo_events: list[Event], tmp_path: Path
) -> None:
    await _publish(env, demo_events)

    # Serving: a model of another catalogue; the retrained demo model must not be shadowed.
    other = tmp_path / "other"
    publish_model(other, "support")
    code, output = _retrain(other, "r1", "--days", "365")
    assert code == 3, output
    assert f"read {len(demo_events)} events" in output and "cannot be compared" in output
    reg = ModelRegistry(other)
    assert reg.shadow_versions() == [] and reg.current_version() == "support" and "r1" in reg.versions()

    # An empty registry: shadowed (forced: a 2-epoch model need not beat its baselines), not served.
    fresh = tmp_path / "fresh"
    code, output = _retrain(fresh, "r2", "--days", "365", "--force")
    assert code == 0, output
    reg = ModelRegistry(fresh)
    assert reg.shadow_versions() == ["r2"] and reg.current_version() is None
    manifest = reg.manifest("r2")
    assert manifest.metrics["test"]["lstm"]["mrr@10"] > 0
