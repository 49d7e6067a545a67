"""Cases (舆情处理单): opening one, moving it through its states, its tasks and progress.

Every change happens in the caller's transaction together with its history row
(`case_transitions`) and its audit entry, so a case's record and the audit log never disagree.
Who may do what is checked here, on every call, against the state machine (`states`) and the
department scope (`permissions`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy import text as sql_text

from tingfeng import audit
from tingfeng.cases import deadlines as sla
from tingfeng.cases.permissions import (
    PermissionDenied,
    require_action,
)
from tingfeng.cases.routing import facts_of_case, suggest
from tingfeng.cases.states import ACTIONS
from tingfeng.db.models import (
    Alert,
    Case,
    CaseDeadline,
    CaseTask,
    CaseTemplate,
    CaseTransition,
    Event,
    Post,
)
from tingfeng.office.people import Person, find_department
from tingfeng.problems import ProblemsError
from tingfeng.settings import Settings
from tingfeng.web.i18n import N_

ORIGINS: dict[str, str] = {
    "online": N_("网上舆情"),
    "assigned": N_("上级交办（督办件）"),
    "onsite": N_("现场/媒体来电"),
    "liaison": N_("联络员报送"),
    "board": N_("留言板"),
    "manual": N_("手工登记"),
}
# Who may open a case at all; a handler opens one for their own department (a call they took).
OPENERS = frozenset({"admin", "analyst", "approver", "handler", "liaison"})
TASK_KINDS = {
    "verify": N_("现场核实"),
    "contact": N_("平台公开回复联系"),
    "materials": N_("准备材料"),
    "other": N_("其他"),
}
# The timed steps and the actions that meet them.
MEETS: dict[str, tuple[str, ...]] = {
    "acknowledge": ("assess",),
    "report": ("approve_handling", "dismiss"),
    "feedback": ("submit_reply",),
    "reply": ("publish",),
    "close": ("close", "dismiss"),
    "superior": ("close", "dismiss"),
}
STEP_LABELS = {**sla.STEP_LABELS, "superior": N_("上级时限")}


class CaseError(ProblemsError):
    """A case could not be opened or changed as asked; the message says why."""


# --- small helpers ---------------------------------------------------------------------------


def level_code(value: str | None) -> str:
    from tingfeng.events.decisions import _level_name
    from tingfeng.events.grading import Level

    try:
        return Level(_level_name(value or "general")).value
    except ValueError:
        raise CaseError(
            f"{value!r} is not a level: use 一般/较大/重大/特大 (general, serious, major, critical)."
        ) from None


def level_zh(level: str | None) -> str:
    from tingfeng.events.grading import Level

    try:
        return Level(level or "general").zh
    except ValueError:
        return level or ""


def get_case(conn: Connection, case_id: int | str) -> Any:
    """A case row by id or by number (2026-0003)."""
    t = Case.__table__
    text = str(case_id).strip()
    q = (
        select(t).where(t.c.id == int(text))
        if text.isdigit()
        else select(t).where(t.c.number == text)
    )
    row = conn.execute(q).first()
    if row is None:
        raise CaseError(f"No case {text!r}: see `tingfeng case list`.")
    return row


_PG_LOCK_KEY = 0x7466_6361_7365  # "tfcase": serialises case numbering on PostgreSQL


def _next_number(conn: Connection, now: datetime, tz: str) -> str:
    if conn.dialect.name == "postgresql":
        # Two cases opened at once (two web or worker processes) would both read the same
        # highest number; the second would then fail on the unique constraint when the first
        # commits. The lock makes the second wait and read after it. SQLite writes one at a time.
        conn.execute(sql_text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    year = now.astimezone(ZoneInfo(tz)).year
    last = conn.execute(select(func.max(Case.number)).where(Case.number.like(f"{year}-%"))).scalar()
    seq = int(last.split("-")[1]) + 1 if last else 1
    return f"{year}-{seq:04d}"


def _due(
    settings: Settings, step: str, level: str, start: datetime, overrides: dict | None
) -> datetime:
    return sla.due_at(
        step,
        level,
        start,
        tz=settings.default_timezone,
        office_hours=settings.office_hours,
        overrides=overrides or None,
    )


def _template(conn: Connection, ref: int | str | None) -> Any:
    if ref in (None, ""):
        return None
    text = str(ref).strip()
    t = CaseTemplate.__table__
    row = conn.execute(
        select(t).where(t.c.id == int(text))
        if text.isdigit()
        else select(t).where(t.c.name == text)
    ).first()
    if row is None:
        raise CaseError(f"No case template {text!r}: see `tingfeng case templates`.")
    return row


def _parse_time(value: Any, what: str, tz: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(tz))
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise CaseError(f"{what} {value!r} is not a time: write YYYY-MM-DD HH:MM.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo(tz))


def _check_origin(origin: str, detail: dict[str, Any], tz: str) -> dict[str, Any]:
    if origin not in ORIGINS:
        raise CaseError(f"Unknown origin {origin!r}: use one of {', '.join(ORIGINS)}.")
    detail = {k: v for k, v in (detail or {}).items() if v not in (None, "")}
    problems = []
    if origin == "assigned":
        if not detail.get("office"):
            problems.append("A matter assigned by a superior office needs the office (office).")
        if not detail.get("instructions"):
            problems.append("A matter assigned by a superior office needs its instructions.")
        if detail.get("deadline"):
            when = _parse_time(detail["deadline"], "The superior's deadline", tz)
            detail["deadline"] = when.isoformat() if when else None
    if origin == "onsite" and not detail.get("question"):
        problems.append(
            "An on-site matter or a journalist's call needs what was asked (question); "
            "caller and outlet if known."
        )
    if problems:
        raise CaseError(problems)
    return detail


def _record(
    conn: Connection,
    case: Any,
    actor: Person | None,
    action: str,
    to_state: str,
    *,
    reason: str = "",
    detail: dict[str, Any] | None = None,
    now: datetime,
) -> None:
    conn.execute(
        insert(CaseTransition).values(
            case_id=case.id,
            action=action,
            from_state=case.state if case is not None else "",
            to_state=to_state,
            user_id=actor.id if actor else None,
            by=actor.display_name if actor else "系统",
            reason=reason,
            detail=detail or {},
            at=now,
        )
    )
    audit.record(
        conn,
        actor,
        f"case.{action}",
        f"case:{case.id}",
        {"number": case.number, "from": case.state, "to": to_state, "reason": reason,
         **(detail or {})},
        at=now,
    )  # fmt: skip


def _add_deadline(
    conn: Connection,
    case_id: int,
    step: str,
    due: datetime,
    department_id: int | None = None,
    *,
    now: datetime,
) -> None:
    conn.execute(
        insert(CaseDeadline).values(
            case_id=case_id, step=step, due_at=due, department_id=department_id, status="open",
            created_at=now,
        )
    )  # fmt: skip


def _meet(conn: Connection, case_id: int, action: str, now: datetime) -> None:
    steps = [s for s, actions in MEETS.items() if action in actions]
    if steps:
        conn.execute(
            update(CaseDeadline)
            .where(
                CaseDeadline.case_id == case_id,
                CaseDeadline.step.in_(steps),
                CaseDeadline.status == "open",
            )
            .values(status="met", met_at=now)
        )


# --- opening ---------------------------------------------------------------------------------


def open_case(
    conn: Connection,
    actor: Person | None,
    settings: Settings,
    *,
    title: str = "",
    origin: str = "manual",
    summary: str = "",
    origin_detail: dict[str, Any] | None = None,
    alert_id: int | None = None,
    event_id: int | None = None,
    post_id: int | None = None,
    board_message_id: int | None = None,
    template: int | str | None = None,
    level: str | None = None,
    category: str | None = None,
    region: str | None = None,
    department: int | str | None = None,
    now: datetime | None = None,
) -> int:
    """Open a case; returns its id. From an alert, an event or a post the title, level and
    links are taken from it; `origin` says where the matter came from."""
    now = now or datetime.now(UTC)
    tz = settings.default_timezone
    if actor is not None and (not actor.active or actor.role not in OPENERS):
        raise PermissionDenied(f"The {actor.role} role may not open cases.")
    detail = _check_origin(origin, origin_detail or {}, tz)
    if alert_id is not None:
        alert = conn.execute(select(Alert.__table__).where(Alert.id == alert_id)).first()
        if alert is None:
            raise CaseError(f"No alert {alert_id}.")
        event_id = event_id or alert.event_id
        post_id = post_id or alert.post_id
        title = title or alert.title
        level = level or alert.level
        summary = summary or alert.excerpt
    if event_id is not None:
        event = conn.execute(select(Event.__table__).where(Event.id == event_id)).first()
        if event is None:
            raise CaseError(f"No event {event_id}.")
        title = title or event.title
        summary = summary or event.summary
        level = level or event.level
        post_id = post_id or event.first_post_id
    if post_id is not None:
        post = conn.execute(
            select(Post.id, Post.title, Post.text_clean).where(Post.id == post_id)
        ).first()
        if post is None:
            raise CaseError(f"No post {post_id}.")
        title = title or post.title or post.text_clean[:60]
        summary = summary or post.text_clean[:500]
    title = " ".join((title or "").split())
    if not title:
        raise CaseError("A case needs a title (or an alert, event or post to take it from).")
    if origin in ("manual", "online") and (alert_id or event_id or post_id):
        origin = "online"
    tpl = _template(conn, template)
    level = level_code(level)
    department_id = find_department(conn, department) if department not in (None, "") else None
    if actor is not None and actor.role == "handler":
        department_id = department_id or actor.department_id
        if department_id != actor.department_id:
            raise PermissionDenied("A handler opens cases for their own department only.")
    if department_id is None and tpl is not None:
        department_id = tpl.department_id
    number = _next_number(conn, now, tz)
    case_id = int(
        conn.execute(
            insert(Case).values(
                number=number,
                title=title[:500],
                summary=summary or "",
                origin=origin,
                origin_detail=detail,
                event_id=event_id,
                alert_id=alert_id,
                post_id=post_id,
                board_message_id=board_message_id,
                template_id=tpl.id if tpl else None,
                level=level,
                category=category,
                region=region,
                state="new",
                department_id=department_id,
                approval_levels=tpl.approval_levels if tpl else 1,
                created_by=actor.id if actor else None,
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]
    )
    case = get_case(conn, case_id)
    suggestions = suggest(conn, facts_of_case(conn, case))
    if suggestions:
        conn.execute(
            update(Case)
            .where(Case.id == case_id)
            .values(
                suggested_department_id=suggestions[0].department_id,
                routing={"suggestions": [s.as_dict() for s in suggestions[:5]]},
            )
        )
    overrides = dict(tpl.deadlines) if tpl and tpl.deadlines else None
    for step in ("acknowledge", "report", "reply", "close"):
        _add_deadline(conn, case_id, step, _due(settings, step, level, now, overrides), now=now)
    if detail.get("deadline"):
        _add_deadline(
            conn, case_id, "superior", datetime.fromisoformat(detail["deadline"]), now=now
        )
    if tpl is not None:
        for task in tpl.tasks or []:
            due = None
            if task.get("due"):
                due = sla.parse_duration(str(task["due"])).apply(now, settings.office_hours, tz=tz)
            conn.execute(
                insert(CaseTask).values(
                    case_id=case_id,
                    title=str(task.get("title") or "任务"),
                    kind=str(task.get("kind") or "other"),
                    department_id=department_id,
                    due_at=due,
                    status="open",
                    created_at=now,
                )
            )
    conn.execute(
        insert(CaseTransition).values(
            case_id=case_id, action="open", from_state="", to_state="new",
            user_id=actor.id if actor else None, by=actor.display_name if actor else "系统",
            reason="", detail={"origin": origin}, at=now,
        )
    )  # fmt: skip
    audit.record(
        conn,
        actor,
        "case.open",
        f"case:{case_id}",
        {"number": number, "title": title, "origin": origin, "level": level,
         "alert_id": alert_id, "event_id": event_id, "post_id": post_id},
        at=now,
    )  # fmt: skip
    if board_message_id is not None:
        from tingfeng.cases import board

        board.mark_accepted(conn, board_message_id, case_id, actor)
    if alert_id is not None:
        # The post captured when the alert fired (cases.alert_evidence) joins the case's file.
        from tingfeng.cases.evidence import attach_alert_evidence

        attach_alert_evidence(conn, case_id, alert_id, actor)
    return case_id


# --- moving through the states ---------------------------------------------------------------


def act(
    conn: Connection,
    actor: Person | None,
    settings: Settings,
    case_id: int | str,
    action: str,
    *,
    reason: str = "",
    level: str | None = None,
    handling: str = "",
    department: int | str | None = None,
    result: str = "",
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Any:
    """Take `action` on the case (see tingfeng.cases.states.ACTIONS); returns the case after.

    `actor` None is the system (the relapse watch reopening a case) and skips the role check.
    """
    now = now or datetime.now(UTC)
    case = get_case(conn, case_id)
    if actor is not None:
        require_action(conn, actor, case, action)
    a = ACTIONS[action]
    reason = (reason or "").strip()
    if a.needs_reason and not reason:
        raise CaseError(f"{a.label} needs a reason (--reason).")
    values: dict[str, Any] = {"updated_at": now}
    target = a.target
    extra: dict[str, Any] = dict(detail or {})
    if action == "assess":
        if not handling.strip():
            raise CaseError("An assessment proposes the handling (handling): what is to be done.")
        values["level"] = level_code(level or case.level)
        values["handling"] = handling.strip()
        extra.update(level=values["level"])
    elif action == "assign":
        chosen = department if department not in (None, "") else case.suggested_department_id
        if chosen in (None, ""):
            raise CaseError(
                "Name the department to assign to: no routing rule suggests one for this case."
            )
        department_id = find_department(conn, chosen)
        values["department_id"] = department_id
        values["returned_to"] = None
        extra.update(
            department_id=department_id,
            suggested=case.suggested_department_id,
            overridden=case.suggested_department_id not in (None, department_id),
        )
        overrides = _template_deadlines(conn, case)
        _add_deadline(
            conn, case.id, "feedback",
            _due(settings, "feedback", case.level, now, overrides), department_id, now=now,
        )  # fmt: skip
    elif action == "reject_assignment":
        values["department_id"] = None
        extra.update(department_id=case.department_id)
        conn.execute(
            update(CaseDeadline)
            .where(
                CaseDeadline.case_id == case.id,
                CaseDeadline.step == "feedback",
                CaseDeadline.status == "open",
            )
            .values(status="cancelled")
        )
    elif action == "submit_reply":
        # A staged reply while following comes back to following after it is published.
        values["returned_to"] = "following" if case.state == "following" else None
    elif action == "return_reply":
        target = case.returned_to or "verifying"
    elif action == "follow_up":
        values["returned_to"] = None
    elif action in ("close", "dismiss"):
        text = (result or reason).strip()
        if action == "close" and not text:
            raise CaseError("Closing a case records its result (处置结果): give --result.")
        values.update(result=text, closed_at=now)
        values.update(_watch(conn, settings, case, now))
        conn.execute(
            update(CaseDeadline)
            .where(
                CaseDeadline.case_id == case.id,
                CaseDeadline.status == "open",
                ~CaseDeadline.step.in_([s for s, acts in MEETS.items() if action in acts]),
            )
            .values(status="cancelled")
        )
    elif action == "reopen":
        values.update(closed_at=None, watch_until=None, reopened=case.reopened + 1)
        _add_deadline(
            conn, case.id, "close",
            _due(settings, "close", case.level, now, _template_deadlines(conn, case)),
            case.department_id, now=now,
        )  # fmt: skip
    elif action == "archive":
        values["archived_at"] = now
    if action == "publish" and case.returned_to == "following":
        extra["staged"] = True
    values["state"] = target
    _meet(conn, case.id, action, now)
    _record(conn, case, actor, action, target, reason=reason, detail=extra, now=now)
    conn.execute(update(Case).where(Case.id == case.id).values(**values))
    return get_case(conn, case.id)


def _template_deadlines(conn: Connection, case: Any) -> dict | None:
    if case.template_id is None:
        return None
    tpl = conn.execute(
        select(CaseTemplate.deadlines).where(CaseTemplate.id == case.template_id)
    ).scalar()
    return dict(tpl) if tpl else None


def _watch(conn: Connection, settings: Settings, case: Any, now: datetime) -> dict[str, Any]:
    """What the relapse watch compares against: the event's negative posts in the day before."""
    if case.event_id is None:
        return {"watch_until": None, "watch_baseline": None}
    from tingfeng.cases.effect import negative_posts

    before = negative_posts(conn, case.event_id, now - timedelta(days=1), now)
    return {
        "watch_until": now + timedelta(days=settings.relapse_watch_days),
        "watch_baseline": {"negative_per_day": before, "closed_at": now.isoformat()},
    }
