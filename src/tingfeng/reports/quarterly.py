"""季通报 and the department assessment (考核): per department, the cases it received in the
quarter and how it handled them, ranked, with the definitions printed in the report."""

from __future__ import annotations

from datetime import date, datetime
from statistics import median
from typing import Any

from sqlalchemy import Connection, select

from tingfeng.db.models import Case, CaseDeadline, Department
from tingfeng.reports import figures
from tingfeng.reports.common import KINDS, Chart, Document, Section, Table, chinese_date, period_of
from tingfeng.reports.daily import alerts_section, cases_section

DEFINITIONS = [
    "收到：本季度登记且交办至该单位的舆情处理单。",
    "按时签收 / 按时回应：“签收”“公开回应”时限在到期前完成的个数（分母为该环节未取消的时限数）。",
    "响应用时：处理单登记至签收完成的小时数，取中位数与最长值（仅计已签收）。",
    "超期：曾经超过到期时间的时限个数（含逾期完成）。",
    "办结率：收到的处理单中已办结或归档的比例。",
    "重新打开：办结后因舆情反弹重新打开过的处理单数。",
    "排名：先按办结率，再按按时签收率，再按超期个数（少者在前）。",
]


def _on_time(rows: list[Any], step: str) -> tuple[int, int]:
    mine = [d for d in rows if d.step == step and d.status != "cancelled"]
    ok = sum(1 for d in mine if d.status == "met" and d.met_at and d.met_at <= d.due_at)
    return ok, len(mine)


def departments(conn: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    names = dict(conn.execute(select(Department.id, Department.name)).all())
    cases = conn.execute(
        select(Case.id, Case.department_id, Case.state, Case.reopened, Case.created_at).where(
            Case.created_at >= start, Case.created_at < end, Case.department_id.is_not(None)
        )
    ).all()
    deadlines: dict[int, list[Any]] = {}
    if cases:
        for d in conn.execute(
            select(CaseDeadline.__table__).where(CaseDeadline.case_id.in_([c.id for c in cases]))
        ).all():
            deadlines.setdefault(d.case_id, []).append(d)
    by_dept: dict[int, list[Any]] = {}
    for c in cases:
        by_dept.setdefault(c.department_id, []).append(c)
    out = []
    for dept_id, mine in by_dept.items():
        rows = [d for c in mine for d in deadlines.get(c.id, [])]
        ack_ok, ack_n = _on_time(rows, "acknowledge")
        reply_ok, reply_n = _on_time(rows, "reply")
        hours = []
        for c in mine:
            acks = [d.met_at for d in deadlines.get(c.id, [])
                    if d.step == "acknowledge" and d.status == "met" and d.met_at]  # fmt: skip
            if acks:
                hours.append((min(acks) - c.created_at).total_seconds() / 3600.0)
        closed = sum(1 for c in mine if c.state in ("closed", "archived"))
        out.append(
            {
                "department_id": dept_id,
                "department": names.get(dept_id, f"#{dept_id}"),
                "received": len(mine),
                "ack_on_time": ack_ok,
                "ack_due": ack_n,
                "reply_on_time": reply_ok,
                "reply_due": reply_n,
                "median_hours": round(median(hours), 1) if hours else None,
                "worst_hours": round(max(hours), 1) if hours else None,
                "overdue": sum(1 for d in rows if d.overdue_at is not None),
                "closed": closed,
                "closure_rate": round(closed / len(mine), 4),
                "reopened": sum(1 for c in mine if c.reopened),
            }
        )

    def rate(ok: int, n: int) -> float:
        return ok / n if n else 1.0

    out.sort(key=lambda r: (-r["closure_rate"], -rate(r["ack_on_time"], r["ack_due"]),
                            r["overdue"], r["department"]))  # fmt: skip
    for i, r in enumerate(out, 1):
        r["rank"] = i
    return out


def build(conn: Connection, day: date, tz: str) -> dict[str, Any]:
    p = period_of("quarterly", day, tz)
    return {
        "kind": "quarterly",
        "period": p.label,
        "first": p.first.isoformat(),
        "last": p.last.isoformat(),
        "volume": figures.volume(conn, p),
        "departments": departments(conn, p.start, p.end),
        "alerts": figures.alerts(conn, p),
        "cases": figures.cases(conn, p),
        "top_events": figures.events_in(conn, p, limit=5),
    }


def _ratio(ok: int, n: int) -> str:
    return f"{ok}/{n}" if n else "—"


def document(data: dict[str, Any], now: datetime) -> Document:
    first, last = date.fromisoformat(data["first"]), date.fromisoformat(data["last"])
    doc = Document(kind="quarterly", title=KINDS["quarterly"], period=data["period"],
                   subtitle=f"（{chinese_date(first)}至{chinese_date(last)}）", data=data,
                   notes=list(DEFINITIONS))  # fmt: skip
    vol = data["volume"]
    doc.sections.append(
        Section("一、总体情况",
                [f"本季度共监测到相关网络信息{vol['total']}条，上一季度{vol['previous']}条。"])
    )  # fmt: skip
    depts = data["departments"]
    section = Section(
        "二、各单位处置情况及考核排名",
        [f"共{len(depts)}个单位收到舆情处理单。"] if depts else ["本季度无交办的舆情处理单。"],
    )
    section.tables.append(
        Table(
            ["排名", "单位", "收到", "按时签收", "按时回应", "响应用时中位数(小时)",
             "最长响应用时(小时)", "超期", "办结率", "重新打开"],
            [[r["rank"], r["department"], r["received"], _ratio(r["ack_on_time"], r["ack_due"]),
              _ratio(r["reply_on_time"], r["reply_due"]),
              r["median_hours"] if r["median_hours"] is not None else "—",
              r["worst_hours"] if r["worst_hours"] is not None else "—", r["overdue"],
              f"{r['closure_rate'] * 100:.1f}%", r["reopened"]] for r in depts],
            "考核",
        )
    )  # fmt: skip
    if depts:
        section.charts.append(
            Chart("bar", "各单位办结率(%)", [r["department"] for r in depts],
                  {"办结率": [round(r["closure_rate"] * 100, 1) for r in depts]})
        )  # fmt: skip
    doc.sections.append(section)
    doc.sections.append(alerts_section("三、预警情况", data["alerts"]))
    doc.sections.append(cases_section("四、处置时限", data["cases"]))
    return doc
