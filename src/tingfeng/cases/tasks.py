"""Work inside a case that is not a change of state: tasks (核实现场, 准备材料…) with assignees
and due times, and progress notes (进展) shown on the case and in the ledger."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select, update

from tingfeng import audit
from tingfeng.cases import deadlines as sla
from tingfeng.cases.permissions import require_work
from tingfeng.cases.service import TASK_KINDS, CaseError, _parse_time, _record, get_case
from tingfeng.cases.states import OPEN_STATES, STATES
from tingfeng.db.models import Case, CaseTask
from tingfeng.office.people import Person, find_user
from tingfeng.settings import Settings


def add_task(
    conn: Connection,
    actor: Person,
    settings: Settings,
    case_id: int | str,
    title: str,
    *,
    kind: str = "other",
    assignee: int | str | None = None,
    due_at: datetime | str | None = None,
    due: str | None = None,
    now: datetime | None = None,
) -> int:
    now = now or datetime.now(UTC)
    case = get_case(conn, case_id)
    require_work(conn, actor, case, "add tasks")
    if case.state not in OPEN_STATES:
        raise CaseError(f"Case {case.number} is {STATES[case.state]}: reopen it first.")
    if kind not in TASK_KINDS:
        raise CaseError(f"Unknown task kind {kind!r}: use one of {', '.join(TASK_KINDS)}.")
    if not title.strip():
        raise CaseError("A task needs a title.")
    assignee_id = find_user(conn, assignee).id if assignee not in (None, "") else None
    when = _parse_time(due_at, "Due time", settings.default_timezone)
    if due:
        try:
            when = sla.parse_duration(due).apply(
                now, settings.office_hours, tz=settings.default_timezone
            )
        except sla.DeadlineError as exc:
            raise CaseError(str(exc)) from exc
    task_id = int(
        conn.execute(
            insert(CaseTask).values(
                case_id=case.id, title=title.strip(), kind=kind, assignee_id=assignee_id,
                department_id=case.department_id, due_at=when, status="open", created_at=now,
            )
        ).inserted_primary_key[0]
    )  # fmt: skip
    audit.record(
        conn, actor, "case.task_add", f"case:{case.id}",
        {"task_id": task_id, "title": title.strip(), "assignee_id": assignee_id,
         "due_at": when.isoformat() if when else None},
        at=now,
    )  # fmt: skip
    return task_id


def complete_task(
    conn: Connection, actor: Person, task_id: int, *, note: str = "", now: datetime | None = None
) -> None:
    now = now or datetime.now(UTC)
    task = conn.execute(select(CaseTask.__table__).where(CaseTask.id == task_id)).first()
    if task is None:
        raise CaseError(f"No task {task_id}.")
    case = get_case(conn, task.case_id)
    if task.assignee_id != actor.id:
        require_work(conn, actor, case, "complete tasks")
    if task.status != "open":
        raise CaseError(f"Task {task_id} is already {task.status}.")
    conn.execute(
        update(CaseTask)
        .where(CaseTask.id == task_id)
        .values(status="done", done_at=now, note=note.strip())
    )
    audit.record(
        conn, actor, "case.task_done", f"case:{case.id}", {"task_id": task_id, "note": note},
        at=now,
    )  # fmt: skip


def add_progress(
    conn: Connection, actor: Person, case_id: int | str, text: str, *, now: datetime | None = None
) -> None:
    """A progress note (进展): shown on the case and in the ledger's "last progress"."""
    now = now or datetime.now(UTC)
    case = get_case(conn, case_id)
    require_work(conn, actor, case, "add progress notes")
    text = text.strip()
    if not text:
        raise CaseError("A progress note needs some text.")
    conn.execute(
        update(Case)
        .where(Case.id == case.id)
        .values(last_progress=text, last_progress_at=now, updated_at=now)
    )
    _record(conn, case, actor, "progress", case.state, reason=text, now=now)
