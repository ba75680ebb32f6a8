"""The promotion gate: a new version replaces the serving one only if it is at least as good on the
same test events, scored the way a worker would serve it (ONNX, event by event)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.features import Vocabulary
from stream.registry import LoadedModel, ModelRegistry, ModelVerificationError
from training.data import UserSequence
from training.data.encoded import EncodedEvents
from training.evaluate import evaluate
from training.onnx_eval import step_through_histories

log = logging.getLogger(__name__)

GATE_METRICS = ("mrr@10", "recall@10")


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    current_version: str | None = None
    current_metrics: dict[str, Any] | None = None


def score_served_model(
    model: LoadedModel,
    sequences: list[UserSequence],
    data: EncodedEvents,
    queries: np.ndarray,
    target_vocab: Vocabulary,
) -> dict[str, Any]:
    """Metrics of a registry model on the given test queries, in the new model's index space."""
    stepped = step_through_histories(model, [s.events for s in sequences])
    k = model.manifest.top_k
    flat = np.concatenate([cats for _scores, cats, _intent in stepped]) if stepped else np.zeros((0, k), np.int64)
    ids = model.category_ids(flat[queries - 1])  # the prediction made right after the previous event
    remap = np.vectorize(lambda tok: target_vocab.index(tok) if tok in target_vocab else -1, otypes=[np.int64])
    topk = remap(ids) if ids.size else np.zeros((0, k), np.int64)
    if k < 20:
        topk = np.pad(topk, ((0, 0), (0, 20 - k)), constant_values=-1)
    return evaluate(data.target[queries], topk)


def decide_promotion(
    registry: ModelRegistry,
    version: str,
    sequences: list[UserSequence],
    data: EncodedEvents,
    queries: np.ndarray,
    new_metrics: dict[str, Any],
    *,
    target: str,
    target_vocab: Vocabulary,
    force: bool = False,
) -> PromotionDecision:
    current = registry.current_version()
    if current is None:
        return PromotionDecision(True, "no model is serving yet")
    if force:
        return PromotionDecision(True, f"forced over {current}", current)
    try:
        served = LoadedModel.load(registry, current)
    except ModelVerificationError as exc:
        return PromotionDecision(True, f"serving model {current} fails verification ({exc})", current)
    if served.manifest.feature_spec.target != target:
        return PromotionDecision(False, f"refused: serving model {current} ranks another target (use --force)", current)
    old = score_served_model(served, sequences, data, queries, target_vocab)
    worse = [m for m in GATE_METRICS if float(new_metrics[m] or 0) < float(old[m] or 0)]
    summary = ", ".join(f"{m} {new_metrics[m]:.4f} vs {old[m]:.4f}" for m in GATE_METRICS)
    if worse:
        return PromotionDecision(False, f"refused: worse than serving {current} ({summary})", current, old)
    return PromotionDecision(True, f"at least as good as {current} ({summary})", current, old)
