"""Hand-written SVG: lines as <polyline>, bars as <rect>, native tooltips with <title>.

Colours come from the stylesheet through classes, never from style attributes, so the
strict Content-Security-Policy holds and light and dark themes both apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Every Markup here is built from numbers we format and labels passed through escape().

__all__ = ["Point", "bar_chart", "line_chart", "sparkline"]


@dataclass(frozen=True, slots=True)
class Point:
    label: str
    value: float | None  # None: nothing released for this bucket
    error: float | None = None
    previous: float | None = None


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def line_chart(points: Sequence[Point], title: str, *, compare: bool = False) -> Markup:
    """A time series with optional 95 % error bars and a dashed comparison line."""
    width, height, left, bottom, top = 720.0, 220.0, 48.0, 24.0, 8.0
    plot_w, plot_h = width - left - 8, height - bottom - top
    highs = [(p.value or 0) + (p.error or 0) for p in points]
    if compare:
        highs += [p.previous or 0 for p in points]
    peak = max([*highs, 1.0])
    count = max(len(points), 1)
    step = plot_w / max(count - 1, 1)

    def x(i: int) -> float:
        return left + i * step

    def y(v: float) -> float:
        return top + plot_h - (max(v, 0.0) / peak) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {_fmt(width)} {_fmt(height)}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0.0, 0.5, 1.0):
        gy = y(peak * fraction)
        parts.append(
            f'<line class="grid" x1="{_fmt(left)}" y1="{_fmt(gy)}" x2="{_fmt(width - 8)}" '
            f'y2="{_fmt(gy)}"/><text class="axis" x="{_fmt(left - 4)}" y="{_fmt(gy + 4)}" '
            f'text-anchor="end">{_number(round(peak * fraction))}</text>'
        )
    if points:
        for index in sorted({0, (count - 1) // 2, count - 1}):
            parts.append(
                f'<text class="axis" x="{_fmt(x(index))}" y="{_fmt(height - 6)}" '
                f'text-anchor="middle">{escape(points[index].label)}</text>'
            )
    if compare:
        previous = " ".join(
            f"{_fmt(x(i))},{_fmt(y(p.previous or 0))}" for i, p in enumerate(points)
        )
        parts.append(f'<polyline class="line previous" points="{previous}"/>')
    for i, p in enumerate(points):
        if p.error and p.value is not None:
            parts.append(
                f'<line class="errorbar" x1="{_fmt(x(i))}" y1="{_fmt(y(p.value - p.error))}" '
                f'x2="{_fmt(x(i))}" y2="{_fmt(y(p.value + p.error))}"/>'
            )
    # One polyline per run of released buckets: a gap is "not released yet", not zero.
    run: list[str] = []
    for i, p in enumerate(points):
        if p.value is not None:
            run.append(f"{_fmt(x(i))},{_fmt(y(p.value))}")
        if run and (p.value is None or i == count - 1):
            parts.append(f'<polyline class="line" points="{" ".join(run)}"/>')
            run = []
    radius = 3 if count <= 60 else 1.5
    for i, p in enumerate(points):
        if p.value is None:
            continue
        tip = f"{p.label}: {_number(p.value)}"
        if p.error:
            tip += f" ± {_number(p.error)}"
        if compare and p.previous is not None:
            tip += f" (before: {_number(p.previous)})"
        parts.append(
            f'<circle class="dot" cx="{_fmt(x(i))}" cy="{_fmt(y(p.value))}" r="{radius}">'
            f"<title>{escape(tip)}</title></circle>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704


def bar_chart(bars: Sequence[tuple[str, float]], title: str) -> Markup:
    """Horizontal bars, one per label, in the given order."""
    row, label_w, width = 22.0, 120.0, 360.0
    height = row * max(len(bars), 1) + 4
    peak = max([v for _, v in bars] + [1.0])
    parts = [
        f'<svg class="bars" viewBox="0 0 {_fmt(width)} {_fmt(height)}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, value) in enumerate(bars):
        top = i * row + 2
        bar_w = (width - label_w - 56) * (value / peak)
        parts.append(
            f'<text class="axis" x="{_fmt(label_w - 6)}" y="{_fmt(top + 14)}" '
            f'text-anchor="end">{escape(label)}</text>'
            f'<rect class="bar" x="{_fmt(label_w)}" y="{_fmt(top + 2)}" '
            f'width="{_fmt(max(bar_w, 0.5))}" height="{_fmt(row - 6)}">'
            f"<title>{escape(label)}: {_number(value)}</title></rect>"
            f'<text class="axis" x="{_fmt(label_w + bar_w + 6)}" y="{_fmt(top + 14)}">'
            f"{_number(value)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704


def sparkline(values: Sequence[float], title: str) -> Markup:
    width, height = 100.0, 20.0
    peak = max([*values, 1.0])
    step = width / max(len(values) - 1, 1)
    line = " ".join(
        f"{_fmt(i * step)},{_fmt(height - 1 - (v / peak) * (height - 2))}"
        for i, v in enumerate(values)
    )
    return Markup(  # noqa: S704
        f'<svg class="spark" viewBox="0 0 {_fmt(width)} {_fmt(height)}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f'<title>{escape(title)}</title><polyline class="line" points="{line}"/></svg>'
    )
