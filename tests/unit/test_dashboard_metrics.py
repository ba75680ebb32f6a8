"""The provisioned Grafana dashboard only queries metrics the worker and the evaluator really export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from stream.evaluation import OnlineMetrics
from stream.evaluation.scoring import IntentOutcome, Judged
from stream.worker.metrics import WorkerMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "demandstream.json"


def _exported_sample_names() -> set[str]:
    metrics = WorkerMetrics()
    metrics.model_version.info({"version": "v1"})
    metrics.dlq.labels(code="bad_field").inc()
    metrics.reloads.labels(outcome="loaded").inc()
    online = OnlineMetrics(window_ms=3_600_000)
    online.record([Judged("v1", 0, 1, 2)], [IntentOutcome("v1", 0.3, True)])
    online.publish()
    names: set[str] = set()
    for family in [*metrics.registry.collect(), *online.registry.collect()]:
        names.update(sample.name for sample in family.samples)
        if family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return names


def test_every_dashboard_metric_is_exported_by_the_worker_or_the_evaluator() -> None:
    exprs = re.findall(r'"expr":\s*"((?:[^"\\]|\\.)*)"', DASHBOARD.read_text(encoding="utf-8"))
    queried = {name for expr in exprs for name in re.findall(r"demandstream_[a-z0-9_]+", json.loads(f'"{expr}"'))}
    assert queried, "the dashboard queries no worker metric"
    assert queried - _exported_sample_names() == set()
