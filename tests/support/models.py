"""Small real models for tests: a DemandLSTM trained briefly on generated shoppers, exported through
the real export path (ONNX + parity + registry)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stream.contracts import Event
from stream.features import FeatureSpec, Vocabulary
from stream.registry import Manifest, ModelRegistry
from training.export import export_to_registry
from training.model import DemandLSTM, ModelConfig

CATEGORIES = [f"c{i}" for i in range(40)]
ITEMS = [f"i{i}" for i in range(80)]
_TYPES = ["view", "view", "view", "view", "cart", "fav", "purchase", "search", "review"]


def generated_histories(users: int = 30, seed: int = 0, max_len: int = 60) -> list[list[Event]]:
    """Shoppers who mostly revisit a few favourite categories (plus unseen ids to exercise OOV)."""
    rng = np.random.default_rng(seed)
    histories = []
    for u in range(users):
        favourites = rng.choice(len(CATEGORIES) + 5, size=3, replace=False)
        t = 1_700_000_000_000 + int(rng.integers(0, 10**9))
        events = []
        for j in range(int(rng.integers(2, max_len))):
            t += int(rng.integers(1_000, 5_000_000))
            kind = _TYPES[int(rng.integers(len(_TYPES)))]
            cat = int(favourites[rng.integers(3)]) if rng.random() < 0.8 else int(rng.integers(len(CATEGORIES) + 5))
            events.append(Event(
                event_id=f"u{u}-e{j}", user_id=f"u{u}", ts=t, type=kind,  # type: ignore[arg-type]
                item_id=f"i{rng.integers(len(ITEMS) + 10)}", category_id=f"c{cat}",
                query="蓝牙耳机 降噪" if kind == "search" else None,
                text="电池不耐用，发热严重" if kind == "review" else None,
                rating=2 if kind == "review" else None, price=float(rng.integers(1, 3000)),
            ))  # fmt: skip
        histories.append(events)
    return histories


def make_model(seed: int = 0, hidden: int = 16, window: int = 12) -> tuple[DemandLSTM, Vocabulary, Vocabulary]:
    torch.manual_seed(seed)
    categories, items = Vocabulary(CATEGORIES), Vocabulary(ITEMS)
    model = DemandLSTM(
        FeatureSpec(window=window, text_tokens=3, text_buckets=256),
        ModelConfig(len(categories), len(items), hidden=hidden, cat_dim=8, pointer_dim=8),
    )
    return model, categories, items


def publish_model(root: Path, version: str, *, seed: int = 0, promote: bool = True, window: int = 12) -> Manifest:
    """Export an (untrained but deterministic) model into the registry at ``root``."""
    registry = ModelRegistry(root)
    model, categories, items = make_model(seed, window=window)
    manifest = export_to_registry(
        registry, model, categories, items, version=version, top_k=5,
        parity_histories=generated_histories(users=4, seed=seed), extra={},
    )  # fmt: skip
    if promote:
        registry.promote(version)
    return manifest
