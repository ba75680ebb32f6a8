"""Charts for the report and the dashboard: matplotlib rendered to inline SVG.

Why matplotlib SVG: it is the best-kept Python plotting library and already in the project's
training stack; its SVG needs no JavaScript and no network (one self-contained HTML file), and
with ``svg.fonttype = "none"`` every label stays a ``<text>`` element, so the reader's browser
draws the Chinese words with its own CJK font (and tests can read them from the page).

matplotlib is imported on first use (never at import time) with the non-interactive Agg backend.
"""

from __future__ import annotations

import io
import math
import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from insights.exceptions import InsightsError


class ChartError(InsightsError):
    """A chart cannot be drawn (matplotlib missing)."""


_LOCK = threading.Lock()  # pyplot's state machine is not thread-safe; figures are made one at a time
_FONTS = ["Noto Sans CJK SC", "Noto Sans SC", "WenQuanYi Micro Hei", "Microsoft YaHei", "DejaVu Sans", "sans-serif"]
_XML_DECL = re.compile(r"^<\?xml[^>]*>\s*(<!DOCTYPE[^>]*>\s*)?", re.S)
_COLOR = "#3b73b9"
_HIGHLIGHT = "#d9534f"


def _pyplot() -> Any:
    import logging

    try:
        import matplotlib
    except ImportError as exc:
        raise ChartError("charts need matplotlib: pip install 'demandstream[insights]'") from exc

    matplotlib.use("Agg", force=True)
    # matplotlib measures text with its own fonts; a missing CJK font only logs, the browser draws.
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "demandstream",  # stable ids: the same findings give the same file
            "font.family": "sans-serif",
            "font.sans-serif": _FONTS,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 9,
        }
    )
    return plt


def _to_svg(fig: Any, label: str) -> str:
    buf = io.StringIO()
    with warnings.catch_warnings():
        # Without a CJK font matplotlib only mis-measures Chinese labels; the browser draws them.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = _XML_DECL.sub("", buf.getvalue())
    # A role and label let screen readers (and tests) find each chart by what it shows.
    return svg.replace("<svg ", f'<svg role="img" class="chart" aria-label="{_attr(label)}" ', 1)


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def bucket_labels(buckets: Sequence[int], bucket_s: int) -> list[str]:
    """Readable start times of buckets (UTC): date and time for sub-day buckets, else dates.

    >>> bucket_labels([474_000], 3600), bucket_labels([19_750], 86_400)
    (['2024-01-28 00:00'], ['2024-01-28'])
    """
    fmt = "%Y-%m-%d" if bucket_s >= 86_400 else "%Y-%m-%d %H:%M"
    return [datetime.fromtimestamp(b * bucket_s, UTC).strftime(fmt) for b in buckets]


def series_chart(
    series: Mapping[str, Sequence[float]],
    buckets: Sequence[int],
    bucket_s: int,
    title: str,
    highlight: frozenset[str] = frozenset(),
    columns: int = 3,
    ylabel: str = "",
) -> str:
    """Small multiples: one line per named series over the buckets (shared time axis).

    Series in ``highlight`` (e.g. the rising ones) are drawn red; the newest bucket is marked.
    """
    if not series:
        raise ValueError("no series to draw")
    plt = _pyplot()
    names = list(series)
    cols = min(columns, len(names))
    rows = math.ceil(len(names) / cols)
    x = [datetime.fromtimestamp(b * bucket_s, UTC) for b in buckets]
    with _LOCK:
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 1.9 * rows), sharex=True, squeeze=False)
        try:
            for ax, name in zip(axes.flat, names, strict=False):
                values = list(series[name])
                color = _HIGHLIGHT if name in highlight else _COLOR
                ax.plot(x[-len(values) :], values, color=color, linewidth=1.6, marker="o", markersize=2.5)
                ax.fill_between(x[-len(values) :], values, color=color, alpha=0.12)
                ax.set_title(name, fontsize=10, loc="left")
                ax.set_ylim(bottom=0)
                if ylabel:
                    ax.set_ylabel(ylabel, fontsize=8)
                ax.tick_params(axis="x", labelrotation=30, labelsize=7)
            for ax in list(axes.flat)[len(names) :]:
                ax.set_visible(False)
            fig.suptitle(title, fontsize=11, x=0.01, y=1.0 + 0.1 / rows, ha="left")
            fig.autofmt_xdate()
            return _to_svg(fig, title)
        finally:
            plt.close(fig)


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, fmt: str = "{:.1f}") -> str:
    """A horizontal bar chart, largest on top, each bar labelled with its value."""
    if len(labels) != len(values):
        raise ValueError("labels and values differ in length")
    plt = _pyplot()
    with _LOCK:
        fig, ax = plt.subplots(figsize=(6.4, 0.32 * len(labels) + 0.7))
        try:
            ys = list(range(len(labels)))[::-1]
            ax.barh(ys, list(values), color=_COLOR)
            ax.set_yticks(ys, list(labels))
            for y, v in zip(ys, values, strict=True):
                ax.text(v, y, " " + fmt.format(v), va="center", fontsize=8)
            ax.set_title(title, fontsize=10, loc="left")
            ax.margins(x=0.15)
            return _to_svg(fig, title)
        finally:
            plt.close(fig)
