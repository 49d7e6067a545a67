"""网络舆情日报告表: one local day — the overall situation, the key items, new and escalated
events, warnings, cases and the duty shifts' reports (zero reports among them)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from tingfeng.reports import figures, zero
from tingfeng.reports.common import (
    KINDS,
    Chart,
    Document,
    Section,
    Table,
    chinese_date,
    pct,
    period_of,
    signed,
)
from tingfeng.web.overview import _hourly


def build(conn: Connection, day: date, tz: str) -> dict[str, Any]:
    p = period_of("daily", day, tz)
    verdict = zero.assess(conn, p)
    hourly = _hourly(conn, p.until, ZoneInfo(tz))
    return {
        "kind": "daily",
        "period": p.label,
        "day": day.isoformat(),
        "volume": figures.volume(conn, p),
        "hourly": {"labels": hourly["labels"], "total": hourly["total"],
                   "negative": hourly["negative"]},
        **figures.mixes(conn, p),
        "key_items": figures.events_in(conn, p),
        "new_events": figures.new_events(conn, p),
        "escalated_events": figures.escalated_events(conn, p),
        "alerts": figures.alerts(conn, p),
        "cases": figures.cases(conn, p),
        "shift_reports": figures.shift_reports(conn, p),
        "quiet": verdict.quiet,
        "quiet_reasons": verdict.reasons,
        "notable": verdict.notable,
    }  # fmt: skip


def overall_section(data: dict[str, Any], what: str = "当日") -> Section:
    vol = data["volume"]
    change = (
        f"较上一周期{signed(vol['change'])}条（{signed(int(vol['change_pct']))}%）"
        if vol["change_pct"] is not None
        else f"上一周期{vol['previous']}条"
    )
    total = vol["total"]
    mix = "，".join(f"{r['label_zh']}{r['count']}条（{pct(r['count'], total)}）"
                    for r in data["polarity"]) or "暂无倾向研判"  # fmt: skip
    emotions = "，".join(f"{r['label_zh']}{r['count']}条" for r in data["emotion"][:5])
    section = Section(
        "一、总体态势",
        [f"{what}共监测到相关网络信息{total}条，{change}。", f"情感倾向：{mix}。"]
        + ([f"情绪分布：{emotions}。"] if emotions else []),
    )
    section.tables.append(
        Table(["信息来源", "条数", "占比"],
              [[s["name"], s["count"], pct(s["count"], total)] for s in data["sources"]],
              "来源")
    )  # fmt: skip
    if data["regions"]:
        section.tables.append(
            Table(["涉及地区", "条数"], [[r["path"], r["count"]] for r in data["regions"]], "地区")
        )
    if data["polarity"]:
        section.charts.append(
            Chart("pie", "情感倾向分布", [r["label_zh"] for r in data["polarity"]],
                  {"条数": [r["count"] for r in data["polarity"]]})
        )  # fmt: skip
    return section


def events_table(rows: list[dict[str, Any]], name: str) -> Table:
    return Table(
        ["编号", "事件", "等级", "热度", "信息量", "摘要"],
        [[e["id"], e["title"], e["level_zh"], e["heat"] if e["heat"] is not None else "—",
          e["posts"], e["summary"]] for e in rows],
        name,
    )  # fmt: skip


def alerts_section(heading: str, a: dict[str, Any]) -> Section:
    levels = "，".join(f"{r['level_zh']}{r['count']}条" for r in a["by_level"]) or "无"
    return Section(
        heading,
        [f"发出预警{a['issued']}条（{levels}），确认{a['acknowledged']}条，"
         f"当期发出仍未确认{a['open']}条。"],
    )  # fmt: skip


def cases_section(heading: str, c: dict[str, Any]) -> Section:
    section = Section(
        heading,
        [f"新建舆情处理单{c['opened']}件，办结{c['closed']}件；到期时限{c['deadlines_due']}个，"
         f"按时完成{c['on_time']}个，逾期完成{c['late']}个，超期未完成{c['overdue']}个。"],
    )  # fmt: skip
    if c["deadline_stats"]:
        section.tables.append(
            Table(["环节", "责任单位", "到期", "按时", "逾期完成", "超期未完成"],
                  [[s["step_label"], s["department"], s["due"], s["on_time"], s["late"],
                    s["overdue"]] for s in c["deadline_stats"]], "时限")
        )  # fmt: skip
    return section


def shifts_section(heading: str, shifts: list[dict[str, Any]]) -> Section:
    zeros = sum(1 for s in shifts if s["kind"] == "zero")
    section = Section(
        heading,
        [f"值班报告{len(shifts)}份，其中零报告{zeros}份。"] if shifts else ["无值班报告记录。"],
    )
    if shifts:
        section.tables.append(
            Table(["日期", "班次", "类型", "报告人", "事项数", "交接说明"],
                  [[s["on_date"], s["shift"], s["kind_zh"], s["by"], s["items"], s["handover"]]
                   for s in shifts], "值班")
        )  # fmt: skip
    return section


def document(data: dict[str, Any], now: datetime) -> Document:
    day = date.fromisoformat(data["day"])
    doc = Document(kind="daily", title=KINDS["daily"], period=data["period"],
                   subtitle=f"（{chinese_date(day)}）", data=data)  # fmt: skip
    if data["quiet"]:
        doc.notes.append(
            "当日无需要报告的重要舆情（" + "；".join(data["quiet_reasons"]) + "），"
            "可报送零报告：tingfeng report zero --date " + data["day"] + "。"
        )
    overall = overall_section(data)
    overall.charts.insert(
        0, Chart("line", "分时信息量", data["hourly"]["labels"],
                 {"全部": data["hourly"]["total"], "负面": data["hourly"]["negative"]})
    )  # fmt: skip
    doc.sections.append(overall)
    key = Section("二、重点舆情", [] if data["key_items"] else ["当日无重点舆情事件。"])
    key.links = [(f"{e['title']}：{e['summary']}", e["url"]) for e in data["key_items"]]
    if data["key_items"]:
        key.tables.append(events_table(data["key_items"], "重点舆情"))
    doc.sections.append(key)
    events = Section(
        "三、新增及升级事件",
        [f"新增事件{len(data['new_events'])}起，等级上调{len(data['escalated_events'])}起。"],
    )
    if data["new_events"]:
        events.tables.append(events_table(data["new_events"], "新增事件"))
    if data["escalated_events"]:
        events.tables.append(
            Table(["编号", "事件", "原等级", "现等级"],
                  [[e["id"], e["title"], e["from"], e["to"]] for e in data["escalated_events"]],
                  "升级事件")
        )  # fmt: skip
    doc.sections.append(events)
    doc.sections.append(alerts_section("四、预警发布及确认", data["alerts"]))
    doc.sections.append(cases_section("五、舆情处置", data["cases"]))
    doc.sections.append(shifts_section("六、值班及零报告", data["shift_reports"]))
    return doc
