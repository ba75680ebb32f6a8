"""Shared pieces of the benchmarks: private services, representative events and model, output."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stream.contracts import Event, encode_event
from tools.devinfra.broker import TansuBroker, create_topics
from tools.devinfra.redis_server import RedisServer

logger = logging.getLogger(__name__)
RESULTS = Path(__file__).parent / "results"
N_CATEGORIES = 2500
N_ITEMS = 20_000
HIDDEN = 64  # the trainer's default (`demandstream train --hidden`)
_TYPES = ("view",) * 6 + ("cart", "fav", "purchase", "search")


@dataclass(frozen=True, slots=True)
class Services:
    bootstrap: str
    redis_url: str


@asynccontextmanager
async def services(workdir: Path) -> AsyncIterator[Services]:
    """A private tansu broker and redis-server, stopped on exit."""
    broker = TansuBroker(workdir=workdir / "tansu")
    (workdir / "tansu").mkdir(parents=True, exist_ok=True)
    redis = RedisServer(workdir=workdir / "redis")
    (workdir / "redis").mkdir(parents=True, exist_ok=True)
    await broker.start()
    redis.start()
    try:
        yield Services(broker.bootstrap, redis.url)
    finally:
        redis.stop()
        broker.stop()


async def make_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    await create_topics(bootstrap, dict.fromkeys(names, partitions))


def shopper_events(n: int, users: int, *, seed: int = 0, start_ms: int | None = None) -> list[Event]:
    """``n`` events of ``users`` shoppers who revisit a few favourite categories (Zipf overall)."""
    rng = np.random.default_rng(seed)
    favourites = rng.zipf(1.3, size=(users, 4)) % N_CATEGORIES
    t0 = start_ms if start_ms is not None else time.time_ns() // 1_000_000 - 86_400_000
    user_of = rng.integers(0, users, size=n)
    kinds = rng.integers(0, len(_TYPES), size=n)
    events = []
    for j in range(n):
        u = int(user_of[j])
        cat = int(favourites[u, rng.integers(4)]) if rng.random() < 0.7 else int(rng.integers(N_CATEGORIES))
        kind = _TYPES[int(kinds[j])]
        events.append(Event(
            event_id=f"b{seed}-{j}", user_id=f"user{u}", ts=t0 + j * 10, type=kind,  # type: ignore[arg-type]
            item_id=f"i{rng.integers(N_ITEMS)}", category_id=f"c{cat}", price=float(rng.integers(1, 3000)),
            query="蓝牙耳机 降噪 无线" if kind == "search" else None,
        ))  # fmt: skip
    return events


def payloads(events: Sequence[Event]) -> list[tuple[bytes, bytes]]:
    return [(e.user_id.encode(), encode_event(e)) for e in events]


def export_model(root: Path, version: str = "bench", hidden: int = HIDDEN, prior_top_m: int | None = None) -> None:
    """A default-sized model through the real export: the trainer's window (100), the
    trainer's default hidden size, ~2500 categories and a (V, V) transition prior in the graph
    (``prior_top_m``: entries kept per prior row; default the trainer's, >= V keeps dense rows)."""
    import torch

    from stream.features import FeatureSpec, Vocabulary
    from stream.registry import ModelRegistry
    from training.export import export_to_registry
    from training.model import DemandLSTM, ModelConfig
    from training.priors import SparsePrior

    torch.manual_seed(0)
    categories = Vocabulary([f"c{i}" for i in range(N_CATEGORIES)])
    items = Vocabulary([f"i{i}" for i in range(N_ITEMS)])
    v = len(categories)
    transitions = torch.rand(v, v).softmax(-1).numpy()
    top_m = ModelConfig.prior_top_m if prior_top_m is None else prior_top_m
    config = ModelConfig(v, len(items), hidden=hidden, prior_top_m=top_m)
    prior = SparsePrior.from_rows(transitions, transitions.mean(axis=0), top_m)
    model = DemandLSTM(FeatureSpec(window=100), config, prior)
    history = shopper_events(40, users=2, seed=99)
    parity = [[e for e in history if e.user_id == u] for u in ("user0", "user1")]
    registry = ModelRegistry(root)
    export_to_registry(registry, model, categories, items, version=version, top_k=10,
                       parity_histories=[p for p in parity if p], extra={})  # fmt: skip
    registry.promote(version)


def write_results(name: str, results: dict[str, Any], rows: Sequence[tuple[str, str]]) -> Path:
    """Log a two-column table and write the JSON under bench/results/."""
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    logger.info("%s\n%s", name, "\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return path
