"""A dependency-free SVG line chart, enough for the README's two figures."""

from __future__ import annotations

from html import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def line_chart(
    title: str,
    x_label: str,
    y_label: str,
    series: dict[str, list[tuple[float, float]]],
    width: int = 640,
    height: int = 400,
) -> str:
    """An SVG document plotting each series as a line with markers (linear axes from 0)."""
    left, right, top, bottom = 70, 20, 40, 90
    xs = [x for points in series.values() for x, _ in points] or [1.0]
    ys = [y for points in series.values() for _, y in points] or [1.0]
    x_max, y_max = max(xs) or 1.0, (max(ys) or 1.0) * 1.1
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + plot_w * x / x_max

    def py(y: float) -> float:
        return top + plot_h * (1 - y / y_max)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 35}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="15" y="{top + plot_h / 2}" text-anchor="middle" transform="rotate(-90 15 {top + plot_h / 2})">{escape(y_label)}</text>',
    ]
    for i in range(5):
        y = y_max * i / 4
        out.append(f'<text x="{left - 6}" y="{py(y) + 4}" text-anchor="end">{y:,.0f}</text>')
        out.append(
            f'<line x1="{left}" y1="{py(y)}" x2="{left + plot_w}" y2="{py(y)}" stroke="#ddd"/>'
        )
    for x in sorted(set(xs)):
        out.append(f'<text x="{px(x)}" y="{top + plot_h + 16}" text-anchor="middle">{x:g}</text>')
    for n, (name, points) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(points))
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        out += [
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{colour}"/>'
            for x, y in points
        ]
        ly = height - bottom + 50 + 14 * n
        out.append(f'<rect x="{left}" y="{ly - 9}" width="12" height="4" fill="{colour}"/>')
        out.append(f'<text x="{left + 18}" y="{ly - 4}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)
