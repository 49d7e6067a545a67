"""Reading cases: the list a person may see, and everything a case's page shows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from tingfeng.cases.permissions import require_see, scope_of
from tingfeng.cases.service import (
    ORIGINS,
    STEP_LABELS,
    TASK_KINDS,
    CaseError,
    get_case,
    level_zh,
)
from tingfeng.cases.states import OPEN_STATES, STATES, available
from tingfeng.db.models import (
    Case,
    CaseDeadline,
    CaseTask,
    CaseTransition,
    Department,
    Post,
    User,
)
from tingfeng.office.people import Person, find_department


def case_summary(row: Any, departments: dict[int, str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "number": row.number,
        "title": row.title,
        "origin": row.origin,
        "origin_label": ORIGINS.get(row.origin, row.origin),
        "level": row.level,
        "level_label": level_zh(row.level),
        "state": row.state,
        "state_label": STATES.get(row.state, row.state),
        "department_id": row.department_id,
        "department": departments.get(row.department_id) if row.department_id else None,
        "event_id": row.event_id,
        "alert_id": row.alert_id,
        "post_id": row.post_id,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "last_progress": row.last_progress,
        "reopened": row.reopened,
    }


def list_cases(
    conn: Connection,
    actor: Person | None,
    *,
    state: str | None = None,
    open_only: bool = False,
    department: int | str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The cases `actor` may see (all for None: the command line run by the operator)."""
    t = Case.__table__
    q = select(t).order_by(t.c.id.desc()).limit(limit).offset(offset)
    if actor is not None:
        clause = scope_of(conn, actor).where()
        if clause is not None:
            q = q.where(clause)
    if state:
        if state not in STATES:
            raise CaseError(f"Unknown state {state!r}: use one of {', '.join(STATES)}.")
        q = q.where(t.c.state == state)
    if open_only:
        q = q.where(t.c.state.in_(sorted(OPEN_STATES)))
    if department not in (None, ""):
        q = q.where(t.c.department_id == find_department(conn, department))
    departments = dict(conn.execute(select(Department.id, Department.name)).all())
    return [case_summary(r, departments) for r in conn.execute(q).all()]


def case_detail(
    conn: Connection, actor: Person | None, case_id: int | str, *, now: datetime | None = None
) -> dict[str, Any]:
    """Everything the case page shows: the case, its history, tasks, deadlines, replies,
    evidence, what the person may do next."""
    from tingfeng.cases.evidence import list_evidence
    from tingfeng.cases.replies import list_replies

    now = now or datetime.now(UTC)
    case = get_case(conn, case_id)
    if actor is not None:
        require_see(conn, actor, case)
    departments = dict(conn.execute(select(Department.id, Department.name)).all())
    names = dict(conn.execute(select(User.id, User.display_name)).all())
    out = case_summary(case, departments)
    out.update(
        summary=case.summary,
        origin_detail=case.origin_detail,
        board_message_id=case.board_message_id,
        handling=case.handling,
        result=case.result,
        approval_levels=case.approval_levels,
        suggested_department_id=case.suggested_department_id,
        suggested_department=departments.get(case.suggested_department_id),
        routing=case.routing,
        closed_at=case.closed_at.isoformat() if case.closed_at else None,
        archived_at=case.archived_at.isoformat() if case.archived_at else None,
        watch_until=case.watch_until.isoformat() if case.watch_until else None,
        created_by=names.get(case.created_by) if case.created_by else "系统",
    )
    out["history"] = [
        {"action": r.action, "from": r.from_state, "to": r.to_state, "by": r.by,
         "reason": r.reason, "detail": r.detail, "at": r.at.isoformat()}
        for r in conn.execute(
            select(CaseTransition.__table__)
            .where(CaseTransition.case_id == case.id)
            .order_by(CaseTransition.id)
        ).all()
    ]  # fmt: skip
    out["tasks"] = [
        {"id": r.id, "title": r.title, "kind": r.kind, "kind_label": TASK_KINDS.get(r.kind, r.kind),
         "assignee": names.get(r.assignee_id), "due_at": r.due_at.isoformat() if r.due_at else None,
         "status": r.status, "note": r.note, "overdue": bool(r.status == "open" and r.due_at
                                                            and r.due_at < now)}
        for r in conn.execute(
            select(CaseTask.__table__).where(CaseTask.case_id == case.id).order_by(CaseTask.id)
        ).all()
    ]  # fmt: skip
    out["deadlines"] = deadlines_of(conn, case.id, now)
    out["replies"] = list_replies(conn, case.id)
    out["evidence"] = [
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in e.items()}
        for e in list_evidence(conn, case.id)
    ]
    out["actions"] = (
        [{"name": a.name, "label": a.label, "needs_reason": a.needs_reason}
         for a in available(case.state, actor.role)]
        if actor is not None else []
    )  # fmt: skip
    return out


def deadlines_of(conn: Connection, case_id: int, now: datetime) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(CaseDeadline.__table__)
        .where(CaseDeadline.case_id == case_id)
        .order_by(CaseDeadline.due_at)
    ).all()
    return [
        {
            "id": r.id,
            "step": r.step,
            "label": STEP_LABELS.get(r.step, r.step),
            "due_at": r.due_at.isoformat(),
            "status": r.status,
            "met_at": r.met_at.isoformat() if r.met_at else None,
            "overdue": bool(
                (r.status == "open" and r.due_at < now)
                or (r.met_at is not None and r.met_at > r.due_at)
                or r.overdue_at is not None
            ),
        }
        for r in rows
    ]


def key_posts(conn: Connection, case_id: int | str, limit: int = 5) -> list[int]:
    """The posts whose pages are worth keeping as evidence: the case's own post, then the
    event's earliest posts that have a web address."""
    case = get_case(conn, case_id)
    ids: list[int] = [case.post_id] if case.post_id else []
    if case.event_id:
        from tingfeng.db.models import EventPost

        ids += list(
            conn.execute(
                select(Post.id)
                .join(EventPost, EventPost.post_id == Post.id)
                .where(EventPost.event_id == case.event_id, Post.url.is_not(None))
                .order_by(func.coalesce(Post.published_at, Post.fetched_at), Post.id)
                .limit(limit)
            ).scalars()
        )
    with_url = set(
        conn.execute(select(Post.id).where(Post.id.in_(ids), Post.url.is_not(None))).scalars()
    )
    return [i for i in dict.fromkeys(ids) if i in with_url][:limit]
