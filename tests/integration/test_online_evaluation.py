"""``demandstream evaluate`` against the real broker: a replay through a running worker, then the
evaluator's consumer group judges every prediction by the user's next event. Its numbers are
checked against the same pairing done directly on the two topics' records."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from support.models import generated_histories, publish_model
from support.streams import read_topic

from stream.contracts import Event, Prediction, encode_event
from stream.evaluation.service import EVAL_K, Evaluator
from stream.evaluation.shadow import in_sample
from stream.registry import ModelRegistry
from stream.worker import Worker
from tools.cli import main
from tools.demo.replay import replay_file

WAIT_S = 90.0


def direct_mrr(events: list[Event], predictions: list[Prediction], k: int) -> tuple[int, float]:
    """Pairs (prediction after event n, category of event n+1), straight from the records."""
    by_event = {p.event_id: p for p in predictions}
    per_user: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        per_user[e.user_id].append(e)
    n, rr = 0, 0.0
    for history in per_user.values():
        history.sort(key=lambda e: e.ts)
        for before, after in pairwise(history):
            p = by_event.get(before.event_id)
            if p is None:
                continue
            ranking = [c.category_id for c in p.demand][:k]
            n += 1
            rr += 1.0 / (ranking.index(after.category_id) + 1) if after.category_id in ranking else 0.0
    return n, rr / max(n, 1)


async def test_the_evaluator_judges_every_prediction_by_the_next_event(settings_factory: Any, tmp_path: Path) -> None:
    # a window longer than the simulated span: every judged prediction counts
    settings = settings_factory(
        evaluation_port=0, evaluation_group="eval-test", evaluation_window_s=10**8, evaluation_shadow_sample=0.5
    )
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    # the same weights as a shadow: stepped by the evaluator, it must reproduce the worker's predictions
    await asyncio.to_thread(publish_model, settings.model_registry, "v1-shadow", seed=1, promote=False)
    registry = ModelRegistry(settings.model_registry)
    registry.set_shadow("v1-shadow")
    # shoppers over the test model's categories: the live baseline ranks only the serving vocabulary
    events = sorted((e for h in generated_histories(users=30, seed=9, max_len=50) for e in h), key=lambda e: e.ts)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(encode_event(e) + b"\n" for e in events))
    worker, stop = Worker(settings), asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        summary = await replay_file(settings, path, "jsonl")
        values = await read_topic(settings.kafka_bootstrap, settings.topic_predictions, summary.sent, settle_s=2.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)
    predictions = [msgspec.json.decode(v, type=Prediction) for v in values]
    assert {p.model_version for p in predictions} == {"v1"}  # a shadow publishes nothing
    expected_n, expected_mrr = direct_mrr(events, predictions, EVAL_K)
    assert expected_n > 400

    evaluator = Evaluator(settings)
    await asyncio.wait_for(evaluator.run(asyncio.Event(), idle_stop_s=3.0), WAIT_S)
    online = evaluator.publish()["v1"]
    assert online["events"] == expected_n
    assert online["mrr_model"] == pytest.approx(expected_mrr, abs=1e-9)
    assert 0.0 < online["mrr_baseline"] <= 1.0 and online["intent_events"] > 300
    assert evaluator.metrics.registry.get_sample_value(
        "demandstream_eval_window_mrr", {"version": "v1", "method": "baseline"}
    ) == pytest.approx(online["mrr_baseline"])

    shadow, reference = evaluator.publish()["v1-shadow"], evaluator.publish()["v1@sample"]
    sampled = {e.user_id for e in events if in_sample(e.user_id, 0.5)}
    assert 0 < len(sampled) < len({e.user_id for e in events})
    sampled_n, sampled_mrr = direct_mrr([e for e in events if e.user_id in sampled], predictions, EVAL_K)
    assert shadow["events"] == reference["events"] == sampled_n
    assert reference["mrr_model"] == pytest.approx(sampled_mrr, abs=1e-9)
    assert shadow["mrr_model"] == pytest.approx(reference["mrr_model"], abs=1e-6)
    assert shadow["intent_events"] > 0

    # the numbers reach `models promote` through the registry
    live = registry.live_metrics()
    assert live["v1-shadow"]["events"] == sampled_n
    runner = CliRunner()
    args = ["models", "promote", "v1-shadow", "--registry", str(registry.root)]
    too_few = runner.invoke(main, [*args, "--min-live-events", str(sampled_n + 1)])
    assert too_few.exit_code != 0 and "fewer than" in too_few.output
    enough = runner.invoke(main, [*args, "--min-live-events", str(sampled_n)])
    assert enough.exit_code == 0, enough.output
    assert registry.current_version() == "v1-shadow"
