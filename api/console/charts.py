"""Usage charts drawn on the server as SVG (no chart library, no JavaScript): credits by day as
columns, credits by operation as bars. Each chart has a title and a description for screen
readers, and its numbers are also in a table beside it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from markupsafe import Markup, escape

WIDTH = 720
HEIGHT = 220
MARGIN_LEFT = 56
MARGIN_BOTTOM = 28
BAR_HEIGHT = 22
# Operations drawn as bars; the rest are summed into one "other" bar.
OPERATIONS_DRAWN_MAX = 12


@dataclass(frozen=True)
class Point:
    label: str
    value: int


def _nice_max(value: int) -> int:
    if value <= 0:
        return 1
    magnitude = int(10 ** (len(str(value)) - 1))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def days_between(first: date, last: date, values: dict[date, int]) -> list[Point]:
    """One point per day from `first` to `last`, 0 where nothing was used."""
    points = []
    day = first
    while day <= last:
        points.append(Point(day.isoformat(), values.get(day, 0)))
        day += timedelta(days=1)
    return points


def columns(points: list[Point], title: str) -> Markup:
    """A column per point (days), with a y axis of three ticks."""
    top = _nice_max(max((p.value for p in points), default=0))
    plot_w = WIDTH - MARGIN_LEFT - 8
    plot_h = HEIGHT - MARGIN_BOTTOM - 12
    step = plot_w / max(len(points), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-days-title chart-days-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-days-title">{escape(title)}</title>',
        f'<desc id="chart-days-desc">{len(points)} days, at most {top} credits a day</desc>',
    ]
    for tick in (0, top // 2, top):
        y = 12 + plot_h - plot_h * tick / top
        parts.append(
            f'<line class="grid" x1="{MARGIN_LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>'
        )
    label_every = max(1, len(points) // 8)
    for index, point in enumerate(points):
        height = plot_h * point.value / top
        x = MARGIN_LEFT + index * step + step * 0.15
        y = 12 + plot_h - height
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" '
            f'height="{height:.1f}"><title>{escape(point.label)}: {point.value}</title></rect>'
        )
        if index % label_every == 0:
            parts.append(
                f'<text class="tick" x="{x + step * 0.35:.1f}" y="{HEIGHT - 8}" '
                f'text-anchor="middle">{escape(point.label[5:])}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value above is escaped or a number


def bars(points: list[Point], title: str) -> Markup:
    """A horizontal bar per point (operations), largest first, the tail summed as "other"."""
    ordered = sorted(points, key=lambda p: (-p.value, p.label))
    if len(ordered) > OPERATIONS_DRAWN_MAX:
        rest = sum(p.value for p in ordered[OPERATIONS_DRAWN_MAX - 1 :])
        ordered = [*ordered[: OPERATIONS_DRAWN_MAX - 1], Point("other", rest)]
    top = _nice_max(max((p.value for p in ordered), default=0))
    label_w = 200
    plot_w = WIDTH - label_w - 80
    height = max(len(ordered), 1) * (BAR_HEIGHT + 8) + 8
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="chart-ops-title chart-ops-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-ops-title">{escape(title)}</title>',
        f'<desc id="chart-ops-desc">{len(ordered)} operations</desc>',
    ]
    for index, point in enumerate(ordered):
        y = 8 + index * (BAR_HEIGHT + 8)
        width = plot_w * point.value / top
        label = point.label if len(point.label) <= 28 else point.label[:27] + "…"
        parts.append(
            f'<text class="label" x="{label_w - 8}" y="{y + BAR_HEIGHT * 0.7:.1f}" '
            f'text-anchor="end">{escape(label)}</text>'
            f'<rect class="bar" x="{label_w}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}">'
            f"<title>{escape(point.label)}: {point.value}</title></rect>"
            f'<text class="value" x="{label_w + width + 6:.1f}" y="{y + BAR_HEIGHT * 0.7:.1f}">'
            f"{point.value}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value above is escaped or a number
