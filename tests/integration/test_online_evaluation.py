"""``demandstream evaluate`` against the real broker: a replay through a running worker, then the
evaluator's consumer group judges every prediction by the user's next event. Its numbers are
checked against the same pairing done directly on the two topics' records."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import msgspec
import pytest
from support.models import publish_model
from support.streams import read_topic

from stream.contracts import Event, Prediction, encode_event
from stream.evaluation.service import Evaluator
from stream.worker import Worker
from tools.demo.replay import replay_file
from tools.simulate import ShopperSimulator

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
    settings = settings_factory(evaluation_port=0, evaluation_group="eval-test", evaluation_window_s=10**8)
    await asyncio.to_thread(publish_model, settings.model_registry, "v1", seed=1)
    events = list(islice(ShopperSimulator(seed=9, users=25), 600))
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
    expected_n, expected_mrr = direct_mrr(events, predictions, settings.top_k)
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
