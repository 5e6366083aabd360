"""Inline SVG charts for the self-contained HTML reports (no script, no network)."""

from __future__ import annotations

import numpy as np
from markupsafe import Markup, escape

PALETTE = ("#3b6ea8", "#e07b39", "#5a9e6f", "#b5534f", "#8c6bb1", "#7f7f7f")
# The look shared by the curation and eval reports (inline: the pages load nothing).
BASE_CSS = Markup(
    """body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0 auto;
  max-width: 1200px; padding: 16px 24px 60px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 18px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
nav a { margin-right: 12px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #b42318; font-weight: 600; }
.chart text { font-size: 12px; fill: #333; } .chart .title { font-weight: 600; font-size: 13px; }
.text { white-space: pre-wrap; word-break: break-word; font: 12px/1.4 ui-monospace, Menlo, Consolas, monospace;
  background: #f6f8fa; padding: 6px 8px; margin: 2px 0; max-height: 240px; overflow: auto; }
.muted { color: #666; } .empty { color: #888; font-style: italic; }
"""
)


def bar_chart(items: list[tuple[str, float]], title: str, unit: str = "") -> Markup:
    """Horizontal bars, one per (label, value), values printed at the bar's end."""
    if not items:
        return Markup(f'<p class="empty">{escape(title)}: nothing to show</p>')
    width, label_w, row_h = 720, 230, 22
    top = max(v for _, v in items) or 1
    height = row_h * len(items) + 30
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="0" y="14" class="title">{escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(items):
        y = 24 + i * row_h
        w = (width - label_w - 90) * value / top
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(label)}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row_h - 6}" fill="{PALETTE[0]}">'
            f"<title>{escape(label)}: {value:g}{escape(unit)}</title></rect>"
        )
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 14}">{value:g}{escape(unit)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram(edges: list[float], series: dict[str, list[int]], title: str, normalize: bool = True) -> Markup:
    """Grouped vertical bars per bin for one or more series (as shares of each series when `normalize`)."""
    if not edges or not any(sum(c) for c in series.values()):
        return Markup(f'<p class="empty">{escape(title)}: nothing to show</p>')
    width, height, left, bottom = 720, 260, 50, 40
    bins = len(edges) - 1
    values = {name: [c / (sum(counts) or 1) if normalize else c for c in counts] for name, counts in series.items()}
    top = max(max(v) for v in values.values()) or 1
    plot_w, plot_h = width - left - 10, height - bottom - 40
    slot = plot_w / bins
    bar_w = slot / (len(series) + 0.5)
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="0" y="14" class="title">{escape(title)}</text>',
    ]
    for k, (name, vals) in enumerate(values.items()):
        color = PALETTE[k % len(PALETTE)]
        parts.append(f'<rect x="{left + k * 120}" y="22" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{left + k * 120 + 14}" y="31">{escape(name)}</text>')
        for b, v in enumerate(vals):
            h = plot_h * v / top
            x = left + b * slot + k * bar_w + bar_w / 4
            y = height - bottom - h
            label = f"{escape(name)} {edges[b]:g}-{edges[b + 1]:g}: " + (f"{v:.1%}" if normalize else f"{v:g}")
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{label}</title></rect>"
            )
    for b in range(0, bins + 1, max(1, bins // 8)):
        x = left + b * slot
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle">{edges[b]:g}</text>')
    parts.append(
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#888"/></svg>'
    )
    return Markup("".join(parts))


def bins(values: list[int], count: int = 20) -> list[float]:
    """Bin edges covering the values (integers, rounded to a readable step)."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    step = max(1, -(-(hi - lo + 1) // count))
    return [float(lo + i * step) for i in range(count + 1)]


def counts(values: list[int], edges: list[float]) -> list[int]:
    """How many values fall in each bin of `edges` (the last bin includes its end)."""
    if len(edges) < 2:
        return []
    return [int(c) for c in np.histogram(values, bins=edges)[0]]
