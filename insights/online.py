"""The "Model vs baseline, live" panel: the evaluator's window per model version, read from the
registry's ``live.json`` (``demandstream evaluate`` rewrites it every 5 s), beside the live
baseline computed from the same events (the blend when the serving version's training saved it,
else repeat). Shadows appear with the serving model's numbers on the same sampled users, the
comparison ``models promote-shadow`` makes."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from stream.evaluation.blend import baseline_path
from stream.registry import ModelRegistry
from stream.registry.registry import LIVE_METRICS

SAMPLE_SUFFIX = "@sample"


class OnlineRow(msgspec.Struct, frozen=True):
    version: str
    role: str  # "serving", "shadow", "serving, shadow's users", or "earlier"
    events: int
    mrr_model: float
    mrr_baseline: float
    recall_model: float
    recall_baseline: float
    intent_ece: float | None
    sentence: str


class OnlinePanel(msgspec.Struct, frozen=True):
    baseline: str
    rows: list[OnlineRow]
    age_s: float | None  # seconds since the evaluator last wrote its numbers (None: never)


def _sentence(row: dict[str, float], baseline: str) -> str:
    gap = row.get("mrr_model", 0.0) - row.get("mrr_baseline", 0.0)
    if not row.get("events"):
        return "no judged events yet"
    if abs(gap) < 0.001:
        return f"as good as the {baseline} baseline"
    return f"{'beats' if gap > 0 else 'below'} the {baseline} baseline by {abs(gap):.3f} MRR@10"


def _row(name: str, role: str, row: dict[str, float], baseline: str) -> OnlineRow:
    return OnlineRow(
        version=name, role=role, events=int(row.get("events", 0)),
        mrr_model=row.get("mrr_model", 0.0), mrr_baseline=row.get("mrr_baseline", 0.0),
        recall_model=row.get("recall_model", 0.0), recall_baseline=row.get("recall_baseline", 0.0),
        intent_ece=row.get("intent_ece"), sentence=_sentence(row, baseline),
    )  # fmt: skip


def online_panel(registry_root: Path) -> OnlinePanel:
    """The panel's rows: serving first, then shadows (each followed by its like-for-like
    reference), then other versions still in the window."""
    registry = ModelRegistry(registry_root)
    live = registry.live_metrics()
    current = registry.current_version()
    shadows = registry.shadow_versions()
    baseline = "blend" if current and baseline_path(registry_root, current).is_file() else "repeat"
    order: list[tuple[str, str]] = []
    if current in live:
        order.append((current, "serving"))
    for shadow in shadows:
        if shadow in live:
            order.append((shadow, "shadow"))
            if f"{current}{SAMPLE_SUFFIX}" in live:
                order.append((f"{current}{SAMPLE_SUFFIX}", "serving, shadow's users"))
    listed = {name for name, _ in order}
    order += [(name, "earlier") for name in sorted(live) if name not in listed and not name.endswith(SAMPLE_SUFFIX)]
    rows = [_row(name, role, live[name], baseline) for name, role in order]
    try:
        age: float | None = max(0.0, time.time() - (registry_root / LIVE_METRICS).stat().st_mtime)
    except OSError:
        age = None
    return OnlinePanel(baseline=baseline, rows=rows, age_s=age)
