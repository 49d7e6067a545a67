"""Charts as PNG images (matplotlib, Agg) with Chinese labels in a Noto CJK font.

The font is looked up once: Noto Sans CJK SC first (Debian's fonts-noto-cjk), else any font
whose name says CJK, SC, Hei, Song or Kai. Without one the chart says so in its title, in
Latin letters, rather than printing boxes for the Chinese.
"""

from __future__ import annotations

import io
from functools import cache

from tingfeng.reports.common import Chart

NOTO = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
_HINTS = ("Noto Sans CJK", "Noto Serif CJK", "Source Han", "WenQuanYi", "SimHei", "SimSun",
          "Hei", "Song", "Kai", "CJK")  # fmt: skip
NO_FONT_NOTE = "(no CJK font found: install fonts-noto-cjk)"


@cache
def cjk_font() -> str | None:
    """The path of a font with Chinese glyphs, or None."""
    from pathlib import Path

    from matplotlib import font_manager

    if Path(NOTO).exists():
        return NOTO
    for entry in font_manager.fontManager.ttflist:
        if any(h.lower() in entry.name.lower() for h in _HINTS):
            return str(entry.fname)
    return None


def render_chart(chart: Chart, width: float = 6.4, height: float = 3.2) -> bytes:
    """The chart as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager
    from matplotlib.figure import Figure

    path = cjk_font()
    font = font_manager.FontProperties(fname=path) if path else None
    fig = Figure(figsize=(width, height), dpi=120)
    ax = fig.add_subplot()
    labels = chart.labels if path else [f"#{i + 1}" for i in range(len(chart.labels))]
    if chart.kind == "pie":
        values = next(iter(chart.series.values()), [])
        if sum(values) > 0:
            _, texts = ax.pie(values, labels=labels, startangle=90, counterclock=False)[:2]
            for t in texts:
                t.set_fontproperties(font) if font else None
        ax.axis("equal")
    else:
        x = list(range(len(labels)))
        n = max(1, len(chart.series))
        for i, (name, values) in enumerate(chart.series.items()):
            if chart.kind == "bar":
                w = 0.8 / n
                ax.bar([v + (i - (n - 1) / 2) * w for v in x], values, width=w, label=name)
            else:
                ax.plot(x, values, marker="o", markersize=2.5, label=name)
        step = max(1, len(labels) // 12)
        ax.set_xticks(x[::step])
        ax.set_xticklabels(labels[::step], rotation=30 if len(labels) > 6 else 0,
                           fontproperties=font, fontsize=7)  # fmt: skip
        ax.grid(axis="y", alpha=0.3)
        # Counts: the axis starts at 0 (and shows 0..1 on an empty period, not -0.04..0.04).
        top = max((max(v) for v in chart.series.values() if v), default=0)
        ax.set_ylim(bottom=0, top=max(1, top * 1.1))
        if len(chart.series) > 1:
            ax.legend(prop=font, fontsize=7)
    title = chart.title if path else f"chart {NO_FONT_NOTE}"
    ax.set_title(title, fontproperties=font)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
