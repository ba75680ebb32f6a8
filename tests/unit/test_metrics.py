"""Every metric against values worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.evaluate import evaluate
from training.exceptions import EvaluationError
from training.metrics import (
    hit_ranks,
    intent_roc_auc,
    mrr_at_k,
    per_category,
    recall_at_k,
    top1_accuracy,
    weighted_prf,
)
from training.report import EpochRecord, MethodResult, ReportInput, write_report
from training.split import TimeSplit

# Target ranks: 1, 2, 3, absent, and an out-of-vocabulary target (1) that is always a miss.
TARGETS = np.array([2, 3, 4, 5, 1])
TOPK = np.array([[2, 6, 7], [6, 3, 7], [6, 7, 4], [6, 7, 8], [2, 3, 4]])


def test_hit_ranks() -> None:
    assert hit_ranks(TARGETS, TOPK).tolist() == [1, 2, 3, 0, 0]


@pytest.mark.parametrize(("k", "expected"), [(1, 0.2), (2, 0.4), (3, 0.6)])
def test_recall_at_k(k: int, expected: float) -> None:
    assert recall_at_k(TARGETS, TOPK, k) == pytest.approx(expected)


@pytest.mark.parametrize(("k", "expected"), [(1, 1 / 5), (2, 1.5 / 5), (3, (1 + 1 / 2 + 1 / 3) / 5)])
def test_mrr_at_k(k: int, expected: float) -> None:
    assert mrr_at_k(TARGETS, TOPK, k) == pytest.approx(expected, abs=1e-4)


def test_top1_accuracy() -> None:
    assert top1_accuracy(TARGETS, TOPK) == pytest.approx(0.2)


def test_weighted_precision_recall_f1_of_top1() -> None:
    # top-1 predictions [2, 6, 6, 6, 2]; only class 2 (support 1 of 5) is ever right:
    # its precision 1/2, recall 1, F1 2/3; every other true class scores 0.
    assert weighted_prf(TARGETS, TOPK) == pytest.approx(
        {"precision_weighted": 0.1, "recall_weighted": 0.2, "f1_weighted": 0.1333}
    )


def test_intent_roc_auc() -> None:
    # positives 0.9 and 0.3 against negatives 0.8 and 0.1: 3 of 4 pairs ordered right.
    assert intent_roc_auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.3, 0.1])) == 0.75
    assert intent_roc_auc(np.array([1, 0]), np.array([0.5, 0.5])) == 0.5  # a tie counts half
    assert intent_roc_auc(np.array([0, 0]), np.array([0.5, 0.1])) is None
    with pytest.raises(EvaluationError):
        intent_roc_auc(np.array([0, 1]), np.array([0.5]))


def test_shapes_that_do_not_pair_up_are_refused() -> None:
    with pytest.raises(EvaluationError):
        recall_at_k(TARGETS[:3], TOPK, 1)


def test_per_category_orders_by_volume() -> None:
    targets = np.array([3, 3, 3, 2, 2, 4])
    topk = np.array([[3, 9], [9, 3], [9, 8], [2, 9], [9, 8], [4, 9]])
    rows = per_category(targets, topk, top_n=2, k=2)
    assert rows == [
        {"index": 3, "n": 3, "recall@2": 0.6667, "mrr@2": 0.5},
        {"index": 2, "n": 2, "recall@2": 0.5, "mrr@2": 0.5},
    ]


def test_evaluate_collects_every_metric() -> None:
    metrics = evaluate(TARGETS, TOPK, np.array([1, 0, 1, 0, 0]), np.array([0.9, 0.8, 0.3, 0.1, 0.0]), ks=(1, 3))
    assert metrics["n_events"] == 5
    assert metrics["recall@3"] == pytest.approx(0.6)
    assert metrics["mrr@3"] == pytest.approx(0.3667)
    assert metrics["top1_accuracy"] == pytest.approx(0.2)
    assert metrics["f1_weighted"] == pytest.approx(0.1333)
    assert metrics["intent_roc_auc"] == pytest.approx(5 / 6, abs=1e-4)
    assert metrics["oov_target_rate"] == pytest.approx(0.2)
    assert evaluate(TARGETS, TOPK)["intent_roc_auc"] is None


def test_report_writes_documented_metrics_json_markdown_and_plots(tmp_path: Path) -> None:
    # The report lives with the metrics it presents (no test file of its own in this layout).
    model = MethodResult("model", evaluate(TARGETS, TOPK), per_category=per_category(TARGETS, TOPK))
    weaker = MethodResult("baseline", evaluate(TARGETS, np.full_like(TOPK, 9)))
    report = ReportInput(
        methods={"lstm": model, "popularity": weaker},
        split=TimeSplit(100, 200).to_dict(),
        data_summary={"users": 2},
        training_curve=[EpochRecord(1, 2.5, 0.3), EpochRecord(2, 2.1, 0.35)],
        category_names={2: "shoes"},
    )
    files = write_report(report, tmp_path)
    document = json.loads(files.metrics_json.read_text())
    assert document["schema_version"] == 1
    assert (document["best_method"], document["best_baseline"]) == ("lstm", "popularity")
    assert document["methods"]["lstm"]["metrics"]["mrr@10"] == pytest.approx(0.3667)
    assert document["methods"]["lstm"]["per_category"][0]["token"] == "shoes"
    assert document["split"]["train_end_ms"] == 100
    assert [r["valid_mrr"] for r in document["training_curve"]] == [0.3, 0.35]
    assert sorted(p.name for p in files.plots) == [
        "learning_curves.png",
        "methods.png",
        "per_category.png",
    ]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in files.plots)
    markdown = files.report_md.read_text()
    assert "| lstm | model |" in markdown and "![methods](methods.png)" in markdown
