"""零报告: a day with nothing notable, and why.

A day is quiet when all of these hold (docs/reports.md prints the same list):
  1. no open event at or above 较大 (serious) was seen that day;
  2. no event's level was raised that day;
  3. no warning (预警) at or above 较大 was raised that day, and none raised that day is still
     open (unacknowledged);
  4. no case (舆情处理单) was opened that day;
  5. no case deadline due that day is overdue (still open past its time).
Post volume alone never makes a day notable: a busy day of ordinary posts is still quiet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection

from tingfeng.reports import figures
from tingfeng.reports.common import KINDS, Document, Period, Section, Table, chinese_date, period_of


@dataclass
class Assessment:
    quiet: bool
    reasons: list[str] = field(default_factory=list)  # the conditions that hold
    notable: list[str] = field(default_factory=list)  # the ones that do not, with figures


def assess(conn: Connection, p: Period) -> Assessment:
    serious = figures.serious_events(conn, p)
    raised = figures.escalated_events(conn, p)
    warned = figures.alerts(conn, p)
    handled = figures.cases(conn, p)
    checks = [
        (not serious, "无较大及以上级别舆情事件",
         f"较大及以上级别舆情事件 {len(serious)} 起"),
        (not raised, "无舆情事件等级上调", f"舆情事件等级上调 {len(raised)} 起"),
        (warned["serious"] == 0, "无较大及以上级别预警",
         f"较大及以上级别预警 {warned['serious']} 条"),
        (warned["open"] == 0, "当日预警均已确认", f"当日预警未确认 {warned['open']} 条"),
        (handled["opened"] == 0, "无新建舆情处理单", f"新建舆情处理单 {handled['opened']} 件"),
        (handled["overdue"] == 0, "无超期未办结时限", f"超期未办结时限 {handled['overdue']} 个"),
    ]  # fmt: skip
    return Assessment(
        quiet=all(ok for ok, _, _ in checks),
        reasons=[yes for ok, yes, _ in checks if ok],
        notable=[no for ok, _, no in checks if not ok],
    )


def build(conn: Connection, day: date, tz: str) -> dict[str, Any]:
    p = period_of("zero", day, tz)
    verdict = assess(conn, p)
    return {
        "kind": "zero",
        "period": p.label,
        "day": day.isoformat(),
        "quiet": verdict.quiet,
        "reasons": verdict.reasons,
        "notable": verdict.notable,
        "volume": figures.volume(conn, p),
        "shift_reports": figures.shift_reports(conn, p),
    }


def document(data: dict[str, Any], now: datetime) -> Document:
    day = date.fromisoformat(data["day"])
    doc = Document(
        kind="zero", title=KINDS["zero"], period=data["period"],
        subtitle=f"（{chinese_date(day)}）", zero=True, data=data,
    )  # fmt: skip
    if data["quiet"]:
        lead = f"{chinese_date(day)}，经监测研判，本辖区未发现需要报告的重要网络舆情，特此零报告。"
    else:
        lead = (
            f"{chinese_date(day)}有需要报告的舆情（{'；'.join(data['notable'])}），"
            "不适用零报告，请报送日报告表。"
        )
    doc.sections.append(Section("一、报告情况", [lead]))
    doc.sections.append(
        Section("二、研判依据", [f"{i}. {r}" for i, r in enumerate(data["reasons"], 1)]
                + [f"（未满足）{n}" for n in data["notable"]])
    )  # fmt: skip
    vol = data["volume"]
    doc.sections.append(
        Section("三、监测概况", [f"当日监测信息 {vol['total']} 条，前一日 {vol['previous']} 条。"])
    )
    shifts = data["shift_reports"]
    doc.sections.append(
        Section(
            "四、值班报告",
            [] if shifts else ["当日无值班报告记录。"],
            [Table(["班次", "类型", "报告人", "事项数"],
                   [[s["shift"], s["kind_zh"], s["by"], s["items"]] for s in shifts], "值班报告")]
            if shifts else [],
        )
    )  # fmt: skip
    return doc
