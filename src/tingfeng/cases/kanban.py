"""The cases board (处理单看板): the cases a person may see, as cards in columns by stage of work.

The columns group the states of `tingfeng.cases.states` by who has the ball: the monitors
(new), the leadership (an assessment to approve), the department (assigned and verifying),
the reply's approval chain, the follow-up after publication, and the cases closed recently.
Archived cases and cases closed long ago stay in the list view. A card is moved by the case's
own actions on its page, never by dragging it: every move is a workflow action with its checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, false, or_, select

from tingfeng.cases.permissions import scope_of
from tingfeng.cases.service import ORIGINS, STEP_LABELS, level_zh
from tingfeng.cases.states import STATES
from tingfeng.db.models import Case, CaseDeadline, CaseTask, CaseTransition, Department, User
from tingfeng.office.people import Person, department_and_below

# (column, states), in the order a case goes through them.
COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("intake", ("new",)),
    ("approval", ("assessed",)),
    ("handling", ("approved", "assigned", "verifying")),
    ("reply", ("drafted", "reply_approved")),
    ("published", ("published", "following")),
    ("closed", ("closed",)),
)
# Whose cases: all the person may see, their department's (and those under it), or their own
# (opened by them, signed for by them, or with an open task of theirs).
VIEWS = ("scope", "department", "mine")
LEVEL_RANK = {"critical": 0, "major": 1, "serious": 2, "general": 3}
# A closed case stays on the board this long, so the week's results are in sight.
CLOSED_DAYS = 30
PER_COLUMN = 100


@dataclass(frozen=True)
class Filters:
    view: str = "scope"
    level: str | None = None
    origin: str | None = None


def kanban(
    conn: Connection,
    actor: Person,
    now: datetime,
    filters: Filters = Filters(),
    *,
    per_column: int = PER_COLUMN,
) -> list[dict[str, Any]]:
    """The columns, each with its states, its cards (most serious and most urgent first, at most
    `per_column`) and how many cases it holds."""
    states = [s for _, group in COLUMNS for s in group]
    t = Case.__table__
    q = select(t).where(
        t.c.state.in_(states),
        (t.c.state != "closed") | (t.c.closed_at >= now - timedelta(days=CLOSED_DAYS)),
    )
    for clause in (scope_of(conn, actor).where(), _view(conn, actor, filters.view)):
        if clause is not None:
            q = q.where(clause)
    if filters.level:
        q = q.where(t.c.level == filters.level)
    if filters.origin:
        q = q.where(t.c.origin == filters.origin)
    rows = conn.execute(q).all()
    ids = [r.id for r in rows]
    due = _next_deadlines(conn, ids)
    accepted = _accepted_by(conn, ids)
    departments = dict(conn.execute(select(Department.id, Department.name)).all())
    far = datetime.max.replace(tzinfo=now.tzinfo)
    cards: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        nxt = due.get(r.id)
        cards.setdefault(r.state, []).append(
            {
                "id": r.id,
                "number": r.number,
                "title": r.title,
                "level": r.level,
                "level_label": level_zh(r.level),
                "state": r.state,
                "state_label": STATES.get(r.state, r.state),
                "origin": r.origin,
                "origin_label": ORIGINS.get(r.origin, r.origin),
                "department": departments.get(r.department_id) if r.department_id else None,
                "assignee": accepted.get(r.id),
                "deadline": (
                    {
                        "step": nxt.step,
                        "label": STEP_LABELS.get(nxt.step, nxt.step),
                        "due_at": nxt.due_at.isoformat(),
                        "seconds_left": int((nxt.due_at - now).total_seconds()),
                        "overdue": nxt.due_at < now,
                    }
                    if nxt is not None and r.state != "closed"
                    else None
                ),
                "updated_at": r.updated_at.isoformat(),
                "_due": nxt.due_at if nxt is not None else far,
            }
        )
    columns = []
    for key, group in COLUMNS:
        mine = [c for s in group for c in cards.get(s, [])]
        if key == "closed":
            mine.sort(key=lambda c: c["updated_at"], reverse=True)
        else:
            mine.sort(key=lambda c: (LEVEL_RANK.get(c["level"], 9), c["_due"], c["number"]))
        for c in mine:
            del c["_due"]
        columns.append(
            {"key": key, "states": list(group), "cards": mine[:per_column], "total": len(mine)}
        )
    return columns


def _view(conn: Connection, actor: Person, view: str) -> Any:
    if view == "department":
        if actor.department_id is None:
            return false()
        return Case.department_id.in_(sorted(department_and_below(conn, [actor.department_id])))
    if view == "mine":
        return or_(
            Case.created_by == actor.id,
            Case.id.in_(
                select(CaseTransition.case_id).where(
                    CaseTransition.user_id == actor.id, CaseTransition.action == "accept"
                )
            ),
            Case.id.in_(
                select(CaseTask.case_id).where(
                    CaseTask.assignee_id == actor.id, CaseTask.status == "open"
                )
            ),
        )
    return None


def _next_deadlines(conn: Connection, ids: list[int]) -> dict[int, Any]:
    """Each case's earliest open deadline."""
    out: dict[int, Any] = {}
    if not ids:
        return out
    for d in conn.execute(
        select(CaseDeadline.case_id, CaseDeadline.step, CaseDeadline.due_at)
        .where(CaseDeadline.case_id.in_(ids), CaseDeadline.status == "open")
        .order_by(CaseDeadline.due_at)
    ).all():
        out.setdefault(d.case_id, d)
    return out


def _accepted_by(conn: Connection, ids: list[int]) -> dict[int, str]:
    """Who signed for each case (签收) since it was last assigned: the person handling it."""
    out: dict[int, str] = {}
    if not ids:
        return out
    for case_id, action, name, by in conn.execute(
        select(CaseTransition.case_id, CaseTransition.action, User.display_name, CaseTransition.by)
        .outerjoin(User, User.id == CaseTransition.user_id)
        .where(CaseTransition.case_id.in_(ids), CaseTransition.action.in_(["assign", "accept"]))
        .order_by(CaseTransition.id)
    ).all():
        if action == "assign":
            out.pop(case_id, None)  # a new department: whoever signed before is not on it now
        else:
            out[case_id] = name or by
    return out
