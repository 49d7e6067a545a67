"""The ledger (台账): the key cases still open or watched, with status, department, deadlines and
last progress; shown on a page and exported as CSV or Excel for the weekly meeting."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from tingfeng.cases.permissions import scope_of
from tingfeng.cases.service import ORIGINS, STEP_LABELS, level_zh
from tingfeng.cases.states import OPEN_STATES, STATES
from tingfeng.db.models import Case, CaseDeadline, Department
from tingfeng.office.people import Person
from tingfeng.web.i18n import N_

_RANK = {"critical": 0, "major": 1, "serious": 2, "general": 3}
COLUMNS: list[tuple[str, str]] = [
    ("number", N_("编号")),
    ("title", N_("标题")),
    ("level_label", N_("等级")),
    ("origin_label", N_("来源")),
    ("state_label", N_("状态")),
    ("department", N_("责任单位")),
    ("next_step", N_("下一时限")),
    ("next_due", N_("到期时间")),
    ("overdue", N_("是否超期")),
    ("overdue_count", N_("超期次数")),
    ("last_progress", N_("最新进展")),
    ("last_progress_at", N_("进展时间")),
    ("opened", N_("登记时间")),
    ("watch_until", N_("跟踪至")),
]


def ledger(conn: Connection, actor: Person | None, now: datetime, tz: str) -> list[dict[str, Any]]:
    """Open cases, and closed ones still watched for a relapse; the most serious and the
    nearest deadline first."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    t = Case.__table__
    q = select(t).where(
        t.c.state.in_(sorted(OPEN_STATES))
        | ((t.c.state == "closed") & t.c.watch_until.is_not(None) & (t.c.watch_until > now))
    )
    if actor is not None:
        clause = scope_of(conn, actor).where()
        if clause is not None:
            q = q.where(clause)
    cases = conn.execute(q).all()
    departments = dict(conn.execute(select(Department.id, Department.name)).all())
    deadlines: dict[int, list[Any]] = {}
    if cases:
        for d in conn.execute(
            select(CaseDeadline.__table__)
            .where(CaseDeadline.case_id.in_([c.id for c in cases]))
            .order_by(CaseDeadline.due_at)
        ).all():
            deadlines.setdefault(d.case_id, []).append(d)

    def local(value: datetime | None) -> str:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M") if value else ""

    rows = []
    for c in cases:
        mine = deadlines.get(c.id, [])
        pending = [d for d in mine if d.status == "open"]
        nxt = pending[0] if pending else None
        rows.append(
            {
                "id": c.id,
                "number": c.number,
                "title": c.title,
                "level": c.level,
                "level_label": level_zh(c.level),
                "origin_label": ORIGINS.get(c.origin, c.origin),
                "state": c.state,
                "state_label": STATES.get(c.state, c.state)
                + ("（反弹跟踪）" if c.state == "closed" else ""),
                "department": departments.get(c.department_id, "未交办")
                if c.department_id
                else "未交办",
                "next_step": STEP_LABELS.get(nxt.step, nxt.step) if nxt else "",
                "next_due": local(nxt.due_at) if nxt else "",
                "next_due_at": nxt.due_at if nxt else None,
                "overdue": "是" if nxt is not None and nxt.due_at < now else "否",
                "overdue_count": sum(1 for d in mine if d.overdue_at is not None),
                "last_progress": c.last_progress,
                "last_progress_at": local(c.last_progress_at),
                "opened": local(c.created_at),
                "watch_until": local(c.watch_until),
            }
        )
    far = datetime.max.replace(tzinfo=now.tzinfo)
    rows.sort(key=lambda r: (_RANK.get(r["level"], 9), r["next_due_at"] or far, r["number"]))
    return rows


def to_csv(rows: list[dict[str, Any]]) -> bytes:
    """UTF-8 with a byte-order mark, so Excel on Windows opens the Chinese correctly."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([label for _, label in COLUMNS])
    for r in rows:
        writer.writerow([_cell(r[key]) for key, _ in COLUMNS])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_xlsx(rows: list[dict[str, Any]], title: str = "舆情台账") -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = title[:31]
    ws.append([label for _, label in COLUMNS])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for r in rows:
        ws.append([_cell(r[key]) for key, _ in COLUMNS])
    ws.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _cell(value: Any) -> Any:
    # A collected title is untrusted: a leading = + - @ (or a tab or CR before
    # one) would run as a formula in Excel.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def deadline_stats(conn: Connection, since: datetime, now: datetime) -> list[dict[str, Any]]:
    """For the deadlines due between `since` and `now`: how many were met on time, met late,
    or are still open past their time, per step and department (超期统计)."""
    departments = dict(conn.execute(select(Department.id, Department.name)).all())
    rows = conn.execute(
        select(CaseDeadline.__table__, Case.department_id.label("case_department"))
        .join(Case, Case.id == CaseDeadline.case_id)
        .where(
            CaseDeadline.due_at >= since,
            CaseDeadline.due_at <= now,
            CaseDeadline.status != "cancelled",
        )
    ).all()
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for d in rows:
        dept_id = d.department_id or d.case_department
        dept = departments.get(dept_id, "未交办") if dept_id else "未交办"
        entry = out.setdefault(
            (d.step, dept),
            {"step": d.step, "step_label": STEP_LABELS.get(d.step, d.step), "department": dept,
             "due": 0, "on_time": 0, "late": 0, "overdue": 0},
        )  # fmt: skip
        entry["due"] += 1
        if d.status == "met" and d.met_at is not None and d.met_at <= d.due_at:
            entry["on_time"] += 1
        elif d.status == "met":
            entry["late"] += 1
        else:
            entry["overdue"] += 1
    return sorted(out.values(), key=lambda e: (e["step"], e["department"]))
