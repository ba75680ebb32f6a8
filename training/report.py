"""``metrics.json`` (schema: ``docs/metrics-schema.md``) and a Markdown report with PNG plots.

The trainer fills a :class:`ReportInput` (plain data: metrics dicts from
:func:`training.evaluate.evaluate`, the split and data summary records, one
:class:`EpochRecord` per epoch) and calls :func:`write_report`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
_BAR_METRICS: Final = ("recall@10", "mrr@10")


class EpochRecord(msgspec.Struct, frozen=True):
    """One point of the learning curve."""

    epoch: int
    train_loss: float
    valid_mrr: float  # MRR@10 on the validation period, the early-stopping metric
    seconds: float | None = None  # wall time of the epoch
    events_per_s: float | None = None  # training-period events per second of the epoch (incl. validation)


class MethodResult(msgspec.Struct, frozen=True):
    """Test-period results of one method: the evaluate() dict, and optionally per-category rows
    from :func:`training.metrics.per_category`."""

    kind: Literal["model", "baseline"]
    metrics: dict[str, float | int | None]
    params: dict[str, Any] = {}
    per_category: list[dict[str, float | int]] = []


class ReportInput(msgspec.Struct, frozen=True):
    """Everything the report shows; JSON-serialisable as is."""

    methods: dict[str, MethodResult]
    split: dict[str, Any]
    data_summary: dict[str, Any]
    target: Literal["category", "item"] = "category"
    primary_metric: str = "mrr@10"
    training_curve: list[EpochRecord] = []
    category_names: dict[int, str] = {}  # index -> token, for labelling per-category plots
    model_version: str | None = None
    title: str = "demandstream evaluation"
    resources: dict[str, Any] = {}  # peak RSS, per-stage seconds (training/resources.py)


@dataclass(frozen=True)
class ReportFiles:
    metrics_json: Path
    report_md: Path
    plots: list[Path]


def best_method(report: ReportInput, kind: str | None = None) -> str | None:
    """Name of the method with the highest primary metric (optionally of one kind)."""
    scored = [
        (float(result.metrics.get(report.primary_metric) or 0.0), name)
        for name, result in report.methods.items()
        if kind is None or result.kind == kind
    ]
    return max(scored)[1] if scored else None


def metrics_document(report: ReportInput) -> dict[str, Any]:
    """The ``metrics.json`` document."""
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "model_version": report.model_version,
        "target": report.target,
        "primary_metric": report.primary_metric,
        "best_method": best_method(report),
        "best_baseline": best_method(report, "baseline"),
        "methods": {
            name: {
                **msgspec.to_builtins(result),
                "per_category": [
                    {**row, "token": report.category_names.get(int(row["index"]))} for row in result.per_category
                ],
            }
            for name, result in report.methods.items()
        },
        "split": report.split,
        "data_summary": report.data_summary,
        "training_curve": msgspec.to_builtins(report.training_curve),
        "resources": report.resources,
    }
    return document


def write_report(report: ReportInput, out_dir: Path) -> ReportFiles:
    """Write ``metrics.json``, ``report.md`` and its PNG plots under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(metrics_document(report), indent=2, ensure_ascii=False) + "\n", "utf-8")
    plots = _plot_all(report, out_dir)
    report_path = out_dir / "report.md"
    report_path.write_text(_markdown(report, plots), encoding="utf-8")
    logger.info("wrote %s and %s", metrics_path, report_path)
    return ReportFiles(metrics_path, report_path, plots)


def _markdown(report: ReportInput, plots: list[Path]) -> str:
    keys = [k for k in _metric_keys(report) if k != "n_events"]
    header = "| method | kind | " + " | ".join(keys) + " |"
    lines = [f"# {report.title}", ""]
    if report.model_version:
        lines += [f"Model version: `{report.model_version}`", ""]
    best, baseline = best_method(report), best_method(report, "baseline")
    lines += [
        f"Target: **{report.target}**. Best on {report.primary_metric}: **{best}** (best baseline: {baseline}).",
        "",
        "## Test-period results",
        "",
        header,
        "|" + " --- |" * (len(keys) + 2),
    ]
    for name, result in report.methods.items():
        cells = [_fmt(result.metrics.get(k)) for k in keys]
        lines.append(f"| {name} | {result.kind} | " + " | ".join(cells) + " |")
    split = report.split
    lines += [
        "",
        "## Split",
        "",
        f"Train before {split.get('train_end_utc')}, validation before "
        f"{split.get('valid_end_utc')}, test after ({split.get('method')}).",
        "",
        "## Data",
        "",
        "```json",
        json.dumps(report.data_summary, indent=2, ensure_ascii=False),
        "```",
        "",
    ]
    if report.resources:
        lines += ["## Resources", "", f"Peak RSS {report.resources.get('peak_rss_mb')} MB.", "",
                  "| stage | seconds | peak RSS (MB) |", "| --- | --- | --- |"]  # fmt: skip
        for name, stage in report.resources.get("stages", {}).items():
            lines.append(f"| {name} | {stage['seconds']} | {stage['peak_rss_mb']} |")
        lines += [f"| epoch {r.epoch} | {r.seconds} | ({r.events_per_s} events/s) |" for r in report.training_curve]
        lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(lines)


def _metric_keys(report: ReportInput) -> list[str]:
    keys: list[str] = []
    for result in report.methods.values():
        keys += [k for k in result.metrics if k not in keys]
    return keys


def _fmt(value: object) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _plot_all(report: ReportInput, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on build machines or in CI
    import matplotlib.pyplot as plt

    plots: list[Path] = []
    if report.training_curve:
        fig, loss_ax = plt.subplots(figsize=(7, 4))
        epochs = [r.epoch for r in report.training_curve]
        loss_ax.plot(epochs, [r.train_loss for r in report.training_curve], "o-", color="tab:blue")
        loss_ax.set(xlabel="epoch", ylabel="train loss")
        mrr_ax = loss_ax.twinx()
        mrr_ax.plot(epochs, [r.valid_mrr for r in report.training_curve], "s--", color="tab:orange")
        mrr_ax.set_ylabel("validation MRR@10")
        fig.suptitle("Learning curves")
        plots.append(_save(fig, out_dir / "learning_curves.png"))
    if report.methods:
        names = list(report.methods)
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(names)), 4))
        width = 0.8 / len(_BAR_METRICS)
        for i, metric in enumerate(_BAR_METRICS):
            values = [float(report.methods[n].metrics.get(metric) or 0.0) for n in names]
            ax.bar([x + i * width for x in range(len(names))], values, width, label=metric)
        ax.set_xticks([x + width / 2 for x in range(len(names))], names)
        ax.set(ylabel="test score", title="Model vs baselines")
        ax.legend()
        plots.append(_save(fig, out_dir / "methods.png"))
    plots += _plot_per_category(report, out_dir, plt)
    return plots


def _plot_per_category(report: ReportInput, out_dir: Path, plt: Any) -> list[Path]:
    shown = [n for n in (best_method(report, "model"), best_method(report, "baseline")) if n]
    rows = {n: report.methods[n].per_category for n in shown if report.methods[n].per_category}
    if not rows:
        return []
    reference = next(iter(rows.values()))
    metric = next(k for k in reference[0] if k.startswith("recall@"))
    indices = [int(r["index"]) for r in reference]
    labels = [report.category_names.get(i, str(i)) for i in indices]
    fig, ax = plt.subplots(figsize=(max(7, 0.6 * len(indices)), 4))
    width = 0.8 / len(rows)
    for j, (name, per_cat) in enumerate(rows.items()):
        by_index = {int(r["index"]): float(r[metric]) for r in per_cat}
        ax.bar(
            [x + j * width for x in range(len(indices))],
            [by_index.get(i, 0.0) for i in indices],
            width,
            label=name,
        )
    ax.set_xticks(range(len(indices)), labels, rotation=60, ha="right", fontsize=8)
    ax.set(ylabel=f"test {metric}", title="Top categories by test volume")
    ax.legend()
    return [_save(fig, out_dir / "per_category.png")]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
