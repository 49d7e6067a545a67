"""Weekly and monthly statistics (周报, 月报): trends, top events and topics, category and region
breakdowns, and handling statistics."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection

from tingfeng.reports import figures
from tingfeng.reports.common import KINDS, Chart, Document, Section, Table, chinese_date, period_of
from tingfeng.reports.daily import alerts_section, cases_section, events_table, overall_section


def build(conn: Connection, kind: str, day: date, tz: str) -> dict[str, Any]:
    p = period_of(kind, day, tz)
    return {
        "kind": kind,
        "period": p.label,
        "first": p.first.isoformat(),
        "last": p.last.isoformat(),
        "volume": figures.volume(conn, p),
        "daily": figures.daily_volumes(conn, p, tz),
        **figures.mixes(conn, p),
        "top_events": figures.events_in(conn, p),
        "new_events": figures.new_events(conn, p),
        "escalated_events": figures.escalated_events(conn, p),
        "topics": figures.top_topics(conn, p),
        "categories": figures.categories(conn, p),
        "alerts": figures.alerts(conn, p),
        "cases": figures.cases(conn, p),
    }


def document(data: dict[str, Any], now: datetime) -> Document:
    first, last = date.fromisoformat(data["first"]), date.fromisoformat(data["last"])
    what = "本周" if data["kind"] == "weekly" else "本月"
    doc = Document(kind=data["kind"], title=KINDS[data["kind"]], period=data["period"],
                   subtitle=f"（{chinese_date(first)}至{chinese_date(last)}）", data=data)  # fmt: skip
    overall = overall_section(data, what)
    overall.charts.insert(
        0, Chart("line", "每日信息量", [d[5:] for d, _ in data["daily"]],
                 {"信息量": [n for _, n in data["daily"]]})
    )  # fmt: skip
    overall.tables.insert(0, Table(["日期", "信息量"], [[d, n] for d, n in data["daily"]], "趋势"))
    doc.sections.append(overall)
    events = Section(
        "二、热点事件",
        [f"{what}活跃事件前{len(data['top_events'])}起；新增事件{len(data['new_events'])}起，"
         f"等级上调{len(data['escalated_events'])}起。"],
    )  # fmt: skip
    if data["top_events"]:
        events.tables.append(events_table(data["top_events"], "热点事件"))
    doc.sections.append(events)
    topics = Section("三、监测方案与分类", [])
    topics.tables.append(
        Table(["监测方案", "命中信息"], [[t["name"], t["posts"]] for t in data["topics"]], "方案")
    )
    topics.tables.append(
        Table(["分类", "信息量"], [[c["name"], c["posts"]] for c in data["categories"]], "分类")
    )
    if data["categories"]:
        topics.charts.append(
            Chart("bar", "分类分布", [c["name"] for c in data["categories"]],
                  {"信息量": [c["posts"] for c in data["categories"]]})
        )  # fmt: skip
    doc.sections.append(topics)
    doc.sections.append(alerts_section("四、预警情况", data["alerts"]))
    doc.sections.append(cases_section("五、处置统计", data["cases"]))
    return doc
