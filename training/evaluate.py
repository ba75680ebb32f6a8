"""One evaluation function shared by the model and every baseline, so all are scored alike.

>>> import numpy as np
>>> m = evaluate(np.array([2, 3]), np.array([[2, 4], [4, 3]]), ks=(1, 2))
>>> m["recall@1"], m["mrr@2"], m["top1_accuracy"], m["n_events"]
(0.5, 0.75, 0.5, 2)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from training.metrics import intent_roc_auc, mrr_at_k, recall_at_k, top1_accuracy, weighted_prf

MetricValue = float | int | None


def evaluate(
    targets: NDArray[np.int64],
    topk: NDArray[np.int64],
    intent_labels: NDArray[np.bool_] | None = None,
    intent_scores: NDArray[np.float64] | None = None,
    ks: tuple[int, ...] = (5, 10, 20),
) -> dict[str, MetricValue]:
    """Metrics dict (keys documented in ``docs/metrics-schema.md``) for one method.

    ``topk`` is ``(n, 20)`` indices best first; the intent AUC is ``None`` without labels and
    scores, or when the labels hold a single class.
    """
    metrics: dict[str, MetricValue] = {"n_events": len(targets)}
    for k in ks:
        metrics[f"recall@{k}"] = recall_at_k(targets, topk, k)
    for k in ks:
        metrics[f"mrr@{k}"] = mrr_at_k(targets, topk, k)
    metrics["top1_accuracy"] = top1_accuracy(targets, topk)
    metrics.update(weighted_prf(targets, topk))
    auc = None
    if intent_labels is not None and intent_scores is not None:
        auc = intent_roc_auc(intent_labels, intent_scores)
    metrics["intent_roc_auc"] = auc
    metrics["oov_target_rate"] = round(float(np.mean(np.asarray(targets) == 1)), 4) if len(targets) else 0.0
    return metrics
