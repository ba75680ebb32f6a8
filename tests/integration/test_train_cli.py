"""``demandstream train`` end to end on small real-format files: metrics.json (documented schema),
report and plots, and a verified model in the registry whose manifest records data, split, metrics.

Inputs are written into ``tmp_path`` at test time: the first rows of the real Taobao and DIGINETICA
files in ``../shared/data`` (never copied into the repo), generated shoppers for JSON lines, each
with the malformed rows of ``tests/fixtures/training`` mixed in.
"""

from __future__ import annotations

import json
import re
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from support.models import generated_histories

from stream.registry import LoadedModel, ModelRegistry
from tools.cli import main

pytestmark = pytest.mark.slow

_REPO = Path(__file__).resolve().parents[2]
_DATA = _REPO.parent / "shared" / "data"
_FIXTURES = _REPO / "tests" / "fixtures" / "training"
TAOBAO = _DATA / "taobao_userbehavior_head100k" / "UserBehavior_head100k.csv"
DIGINETICA = _DATA / "diginetica_srgnn_sample" / "sample_train-item-views.csv"

TOP_KEYS = {
    "schema_version", "created_at", "model_version", "target", "primary_metric", "best_method",
    "best_baseline", "methods", "split", "data_summary", "training_curve", "resources",
}  # fmt: skip
METHOD_KEYS = {"kind", "params", "metrics", "per_category"}
METRIC_KEYS = {
    "n_events", "recall@5", "recall@10", "recall@20", "mrr@5", "mrr@10", "mrr@20", "top1_accuracy",
    "precision_weighted", "recall_weighted", "f1_weighted", "intent_roc_auc", "oov_target_rate",
}  # fmt: skip
BASELINES = {"popularity", "repeat", "markov", "blend", "item_knn", "sknn"}
SPLIT_KEYS = {"train_end_ms", "valid_end_ms", "train_end_utc", "valid_end_utc", "method"}
SUMMARY_KEYS = {
    "rows_read", "rows_dropped", "users", "events", "items", "categories", "event_types",
    "first_ts_ms", "last_ts_ms", "first_ts_utc", "last_ts_utc", "ts_bounds_ms",
}  # fmt: skip


def head(path: Path, n: int) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return list(islice(f, n))


def train(*args: str) -> tuple[str, Path]:
    """Run ``demandstream train`` in-process; return its output and the metrics.json it names."""
    result = CliRunner().invoke(main, ["train", "--epochs", "1", "--hidden", "16", "--window", "10", "--no-progress",
                                       *args])  # fmt: skip
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    match = re.search(r"^metrics: (.+)$", result.output, re.MULTILINE)
    assert match, result.output
    return result.output, Path(match.group(1).strip())


def check_run(metrics_path: Path, registry: Path, *, target: str, malformed: int) -> dict[str, Any]:
    """Everything a training run must leave behind; returns metrics.json."""
    assert metrics_path.is_file()
    metrics: dict[str, Any] = json.loads(metrics_path.read_text(encoding="utf-8"))
    assert set(metrics) == TOP_KEYS
    assert metrics["schema_version"] == 1 and metrics["target"] == target
    assert metrics["primary_metric"] == "mrr@10"
    assert set(metrics["methods"]) == BASELINES | {"lstm"}
    n_events = {m["metrics"]["n_events"] for m in metrics["methods"].values()}
    assert len(n_events) == 1 and n_events.pop() > 20  # every method on the same test events
    for name, method in metrics["methods"].items():
        assert set(method) == METHOD_KEYS, name
        assert method["kind"] == ("model" if name == "lstm" else "baseline")
        assert set(method["metrics"]) == METRIC_KEYS, name
        values = method["metrics"]
        for key in METRIC_KEYS - {"n_events", "intent_roc_auc"}:
            assert 0.0 <= values[key] <= 1.0, (name, key)
        assert values["recall@5"] <= values["recall@10"] <= values["recall@20"]
        assert values["mrr@5"] <= values["mrr@10"] <= values["mrr@20"] <= values["recall@20"]
        assert values["intent_roc_auc"] is None or 0.0 <= values["intent_roc_auc"] <= 1.0
    assert metrics["best_baseline"] in BASELINES
    assert set(metrics["split"]) == SPLIT_KEYS
    assert metrics["split"]["train_end_ms"] <= metrics["split"]["valid_end_ms"]
    summary = metrics["data_summary"]
    assert set(summary) == SUMMARY_KEYS
    assert summary["rows_dropped"]["malformed"] == malformed
    assert [set(e) for e in metrics["training_curve"]] == [
        {"epoch", "train_loss", "valid_mrr", "seconds", "events_per_s"}
    ]
    assert metrics["training_curve"][0]["events_per_s"] > 0
    resources = metrics["resources"]
    assert list(resources["stages"]) == ["load", "encode", "baselines", "fit", "evaluate", "export", "gate"]
    assert 50 < resources["peak_rss_mb"] < 8000 and resources["events"] == summary["events"]
    assert all(stage["seconds"] >= 0 for stage in resources["stages"].values())

    out_dir = metrics_path.parent
    report = (out_dir / "report.md").read_text(encoding="utf-8")
    assert "lstm" in report and metrics["best_baseline"] in report
    for png in ("learning_curves.png", "methods.png"):
        assert (out_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"({png})" in report or png in report

    reg = ModelRegistry(registry)
    version = metrics["model_version"]
    assert version in reg.versions()  # published; served only if the gate let it (test_promotion.py)
    model = LoadedModel.load(reg, version)  # hashes, vocabularies and the ONNX interface
    manifest = model.manifest
    assert manifest.target == target and manifest.feature_spec.target == target
    assert manifest.feature_spec.window == 10 and manifest.hidden == 16
    assert manifest.data_summary == summary
    assert manifest.split == metrics["split"]
    assert manifest.metrics["test"] == {name: m["metrics"] for name, m in metrics["methods"].items()}
    return metrics


def test_train_taobao_head(tmp_path: Path) -> None:
    data = tmp_path / "taobao.csv"
    # the fixture's malformed rows (3) and a duplicate, then the first 3000 real rows
    data.write_text("".join(head(_FIXTURES / "taobao_small.csv", 100) + head(TAOBAO, 3000)), encoding="utf-8")
    registry = tmp_path / "models"
    output, metrics_path = train("--data", str(data), "--format", "taobao", "--registry", str(registry),
                                 "--version", "tb1", "--force")  # fmt: skip
    # forced: a one-epoch model on 3000 rows may sit below its baselines, which the gate refuses
    assert "promotion: promoted (forced)" in output
    metrics = check_run(metrics_path, registry, target="category", malformed=3)
    assert metrics["split"]["method"].startswith("last days: 2 test, 1 validation")
    assert metrics["data_summary"]["rows_dropped"]["duplicate"] >= 1
    assert metrics["data_summary"]["rows_read"] == 3000 + 7

    # A second run without --force is gated; with --no-promote it is published but never served;
    # with --force it serves whatever the gate says.
    output, _ = train("--data", str(data), "--format", "taobao", "--registry", str(registry), "--version", "tb2",
                      "--no-promote")  # fmt: skip
    assert "promotion: not promoted" in output
    reg = ModelRegistry(registry)
    assert reg.current_version() == "tb1" and reg.versions() == ["tb1", "tb2"]
    output, _ = train("--data", str(data), "--format", "taobao", "--registry", str(registry), "--version", "tb3",
                      "--force")  # fmt: skip
    assert "promotion: promoted (forced over tb1)" in output
    assert reg.current_version() == "tb3"
    assert [(e["version"], e["previous"]) for e in reg.history()] == [("tb1", None), ("tb3", "tb1")]


def test_train_jsonl(tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    lines = [msgspec.json.encode(e).decode() + "\n" for h in generated_histories(users=60, seed=4) for e in h]
    data.write_text("".join(head(_FIXTURES / "events_small.jsonl", 100) + lines), encoding="utf-8")
    registry = tmp_path / "models"
    _, metrics_path = train("--data", str(data), "--format", "jsonl", "--registry", str(registry))
    metrics = check_run(metrics_path, registry, target="category", malformed=3)
    assert metrics["split"]["method"] == "fractions 0.8 / 0.9"
    assert metrics["data_summary"]["events"] == len(lines) + 3  # the fixture's three good events


def test_train_diginetica_item_target(tmp_path: Path) -> None:
    data = tmp_path / "views.csv"
    fixture = head(_FIXTURES / "diginetica_small.csv", 100)
    data.write_text("".join(head(DIGINETICA, 3001) + fixture[1:]), encoding="utf-8")  # one header
    registry = tmp_path / "models"
    _, metrics_path = train("--data", str(data), "--format", "diginetica", "--target", "item",
                            "--registry", str(registry), "--split-fractions", "0.7", "0.85")  # fmt: skip
    metrics = check_run(metrics_path, registry, target="item", malformed=3)
    assert metrics["split"]["method"] == "fractions 0.7 / 0.85"
    assert metrics["data_summary"]["categories"] == 0  # DIGINETICA views carry no category
    model = LoadedModel.load(ModelRegistry(registry), metrics["model_version"])
    assert model.targets is model.encoder.items  # the model ranks items


def test_train_reports_per_category_results(tmp_path: Path) -> None:
    """The issue asks for per-category results (metrics.json `per_category`, per_category.png)."""
    data = tmp_path / "taobao.csv"
    data.write_text("".join(head(TAOBAO, 3000)), encoding="utf-8")
    _, metrics_path = train("--data", str(data), "--format", "taobao", "--registry", str(tmp_path / "models"))
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    for name, method in metrics["methods"].items():
        assert method["per_category"], name
        assert {"index", "token", "n", "recall@10", "mrr@10"} <= set(method["per_category"][0])
    assert (metrics_path.parent / "per_category.png").is_file()
