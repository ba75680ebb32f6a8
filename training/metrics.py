"""Ranking and classification metrics over top-k predictions in index space.

``targets`` is ``(n,)`` true indices, ``topk`` is ``(n, k)`` predicted indices best first. A target
that is padding (0) or out of vocabulary (1) can never be hit: rankings never hold 0 or 1.

>>> import numpy as np
>>> targets = np.array([5, 7, 9])
>>> topk = np.array([[5, 2, 3], [2, 7, 3], [2, 3, 4]])
>>> recall_at_k(targets, topk, 2), round(mrr_at_k(targets, topk, 2), 4)
(0.6667, 0.5)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from training.exceptions import EvaluationError

IntArray = NDArray[np.int64]
_DECIMALS = 4


def hit_ranks(targets: IntArray, topk: IntArray) -> IntArray:
    """1-based rank of each target in its row of ``topk``, 0 when absent.

    >>> hit_ranks(np.array([4, 9, 1]), np.array([[3, 4], [2, 3], [1, 2]])).tolist()
    [2, 0, 0]
    """
    targets = np.asarray(targets, dtype=np.int64)
    topk = np.asarray(topk, dtype=np.int64)
    if topk.ndim != 2 or targets.shape != (topk.shape[0],):
        raise EvaluationError(f"targets {targets.shape} and topk {topk.shape} do not pair up")
    hits = (topk == targets[:, None]) & (targets[:, None] >= 2)
    first = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), first + 1, 0).astype(np.int64)


def recall_at_k(targets: IntArray, topk: IntArray, k: int) -> float:
    """Share of events whose target is among the first ``k`` predictions (one target per event,
    so this is also HitRate@k)."""
    ranks = hit_ranks(targets, topk)
    return _mean((ranks >= 1) & (ranks <= k))


def mrr_at_k(targets: IntArray, topk: IntArray, k: int) -> float:
    """Mean of 1/rank of the target, 0 when it is not in the first ``k``."""
    ranks = hit_ranks(targets, topk)
    return _mean(np.where((ranks >= 1) & (ranks <= k), 1.0 / np.maximum(ranks, 1), 0.0))


def top1_accuracy(targets: IntArray, topk: IntArray) -> float:
    """Share of events whose first prediction is the target."""
    return recall_at_k(targets, topk, 1)


def weighted_prf(targets: IntArray, topk: IntArray) -> dict[str, float]:
    """Precision, recall and F1 of the top-1 prediction as a multi-class label, averaged over
    the true classes weighted by their support (scikit-learn's ``average="weighted"``).

    >>> weighted_prf(np.array([2, 2, 3, 3]), np.array([[2], [2], [2], [3]]))
    {'precision_weighted': 0.8333, 'recall_weighted': 0.75, 'f1_weighted': 0.7333}
    """
    from sklearn.metrics import precision_recall_fscore_support

    hit_ranks(targets, topk)  # shape check
    top1 = np.asarray(topk)[:, 0] if np.asarray(topk).shape[1] else np.zeros(len(targets), dtype=np.int64)
    labels = np.unique(np.asarray(targets))
    precision, recall, f1, _ = precision_recall_fscore_support(
        targets, top1, labels=labels, average="weighted", zero_division=0
    )
    return {
        "precision_weighted": round(float(precision), _DECIMALS),
        "recall_weighted": round(float(recall), _DECIMALS),
        "f1_weighted": round(float(f1), _DECIMALS),
    }


def intent_roc_auc(labels: NDArray[np.bool_], scores: NDArray[np.float64]) -> float | None:
    """ROC-AUC of purchase-intent scores; ``None`` when only one class is present.

    >>> intent_roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    >>> intent_roc_auc(np.array([1, 1]), np.array([0.1, 0.4])) is None
    True
    """
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(bool)
    if labels.shape != np.asarray(scores).shape:
        raise EvaluationError(f"intent labels {labels.shape} and scores {np.shape(scores)} differ")
    if labels.all() or not labels.any():
        return None
    return round(float(roc_auc_score(labels, scores)), _DECIMALS)


def per_category(targets: IntArray, topk: IntArray, *, top_n: int = 15, k: int = 10) -> list[dict[str, float | int]]:
    """Recall@k and MRR@k for the ``top_n`` target indices with the most evaluated events.

    >>> rows = per_category(np.array([2, 2, 3]), np.array([[2, 3], [3, 2], [2, 4]]), top_n=2, k=2)
    >>> rows[0], rows[1]["recall@2"]
    ({'index': 2, 'n': 2, 'recall@2': 1.0, 'mrr@2': 0.75}, 0.0)
    """
    targets = np.asarray(targets, dtype=np.int64)
    ranks = hit_ranks(targets, topk)
    values, counts = np.unique(targets[targets >= 2], return_counts=True)
    order = np.lexsort((values, -counts))[:top_n]  # most events first, then by index
    rows: list[dict[str, float | int]] = []
    for index, n in zip(values[order].tolist(), counts[order].tolist(), strict=True):
        r = ranks[targets == index]
        hit = (r >= 1) & (r <= k)
        rows.append(
            {
                "index": int(index),
                "n": int(n),
                f"recall@{k}": _mean(hit),
                f"mrr@{k}": _mean(np.where(hit, 1.0 / np.maximum(r, 1), 0.0)),
            }
        )
    return rows


def _mean(values: NDArray[np.bool_] | NDArray[np.float64]) -> float:
    if values.size == 0:
        return 0.0
    return round(float(np.mean(values)), _DECIMALS)
