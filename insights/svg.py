"""Tiny inline-SVG charts for the HTML report (no plotting stack, and the browser renders the
Chinese labels with its own fonts, which a PNG rasteriser here would lack).

>>> svg = bar_chart(["电池", "屏幕<"], [3.0, 1.5], title="z")
>>> svg.startswith("<svg") and "屏幕&lt;" in svg and svg.count("<rect") == 2
True
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

_ROW_H = 22
_LABEL_W = 150
_VALUE_W = 70


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, width: int = 640, fmt: str = ".1f") -> str:
    """A horizontal bar chart as an ``<svg>`` string; labels and title are escaped."""
    if len(labels) != len(values):
        raise ValueError("labels and values differ in length")
    top = max((v for v in values if v > 0), default=1.0)
    plot_w = width - _LABEL_W - _VALUE_W
    height = 30 + _ROW_H * len(values)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="16" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 26 + i * _ROW_H
        bar = max(0.0, value) / top * plot_w
        parts.append(
            f'<text x="{_LABEL_W - 6}" y="{y + 15}" font-size="13" text-anchor="end">'
            f"{escape(label)}</text>"
            f'<rect x="{_LABEL_W}" y="{y + 3}" width="{bar:.1f}" height="{_ROW_H - 6}" '
            f'fill="#3b73b9"/>'
            f'<text x="{_LABEL_W + bar + 4:.1f}" y="{y + 15}" font-size="12">'
            f"{format(value, fmt)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
