"""The provisioned Grafana dashboard only queries metrics the worker really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from stream.worker.metrics import WorkerMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "demandstream.json"


def _exported_sample_names() -> set[str]:
    metrics = WorkerMetrics()
    metrics.model_version.info({"version": "v1"})
    metrics.dlq.labels(code="bad_field").inc()
    metrics.reloads.labels(outcome="loaded").inc()
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.update(sample.name for sample in family.samples)
        if family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return names


def test_every_dashboard_metric_is_exported_by_the_worker() -> None:
    exprs = re.findall(r'"expr":\s*"((?:[^"\\]|\\.)*)"', DASHBOARD.read_text(encoding="utf-8"))
    queried = {name for expr in exprs for name in re.findall(r"demandstream_[a-z0-9_]+", json.loads(f'"{expr}"'))}
    assert queried, "the dashboard queries no worker metric"
    assert queried - _exported_sample_names() == set()
