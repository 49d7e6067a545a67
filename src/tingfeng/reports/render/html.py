"""HTML reports from Jinja2 templates an office can adapt.

The built-in templates are in tingfeng/reports/templates; a file of the same name in the
setting `report_templates_dir` replaces one (base.html is the layout, daily.html, periodic.html,
quarterly.html, special.html and zero.html each report kind). Collected text is escaped; links
are kept only when they are http(s). Charts are embedded as PNG data URIs, so the file stands
alone (and WeasyPrint needs no network).
"""

from __future__ import annotations

import base64
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from tingfeng.reports.common import Chart, Document
from tingfeng.reports.render.charts import render_chart
from tingfeng.settings import Settings

BUILTIN = Path(__file__).resolve().parents[1] / "templates"
TEMPLATE_OF = {"weekly": "periodic.html", "monthly": "periodic.html"}


def safe_url(url: str | None) -> str:
    url = (url or "").strip()
    return url if url.lower().startswith(("http://", "https://")) else ""


def chart_uri(chart: Chart) -> str:
    return "data:image/png;base64," + base64.b64encode(render_chart(chart)).decode("ascii")


def environment(settings: Settings) -> Environment:
    loaders = []
    if settings.report_templates_dir:
        loaders.append(FileSystemLoader(str(settings.report_templates_dir)))
    loaders.append(FileSystemLoader(str(BUILTIN)))
    env = Environment(loader=ChoiceLoader(loaders), autoescape=select_autoescape(default=True))
    env.filters["safe_url"] = safe_url
    env.filters["chart_uri"] = chart_uri
    return env


def render_html(doc: Document, settings: Settings) -> str:
    name = TEMPLATE_OF.get(doc.kind, f"{doc.kind}.html")
    return environment(settings).get_template(name).render(doc=doc)
