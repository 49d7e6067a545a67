"""Case templates: the tasks, deadline overrides and approval levels a kind of matter presets
(督办件 with two approval levels, 媒体来电 with 核实情况 within 2 hours…)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from tingfeng import audit
from tingfeng.cases import deadlines as sla
from tingfeng.cases.service import ORIGINS, TASK_KINDS, CaseError
from tingfeng.db.models import CaseTemplate
from tingfeng.office.people import Person, find_department


def add_template(
    conn: Connection,
    name: str,
    *,
    origin: str | None = None,
    tasks: list[dict[str, Any]] | None = None,
    deadlines: dict[str, Any] | None = None,
    approval_levels: int = 1,
    department: int | str | None = None,
    actor: Person | None = None,
) -> int:
    """A case template: the tasks, deadlines and approval levels a kind of matter presets."""
    name = name.strip()
    problems = []
    if not name:
        problems.append("A template needs a name.")
    elif conn.execute(select(CaseTemplate.id).where(CaseTemplate.name == name)).first():
        problems.append(f"There is already a template named {name!r}.")
    if origin not in (None, "") and origin not in ORIGINS:
        problems.append(f"Unknown origin {origin!r}: use one of {', '.join(ORIGINS)}.")
    if not 1 <= approval_levels <= 5:
        problems.append("approval_levels must be between 1 and 5.")
    for i, task in enumerate(tasks or [], 1):
        if not str(task.get("title") or "").strip():
            problems.append(f"Task {i} needs a title.")
        if task.get("kind", "other") not in TASK_KINDS:
            problems.append(f"Task {i}: unknown kind {task.get('kind')!r}.")
        if task.get("due"):
            try:
                sla.parse_duration(str(task["due"]))
            except sla.DeadlineError as exc:
                problems.append(f"Task {i}: {exc}")
    if deadlines:
        try:
            deadlines = sla.validate_sla(deadlines)
        except sla.DeadlineError as exc:
            problems.extend(exc.problems)
    if problems:
        raise CaseError(problems)
    department_id = find_department(conn, department) if department not in (None, "") else None
    tid = int(
        conn.execute(
            insert(CaseTemplate).values(
                name=name, origin=origin or None, tasks=tasks or [], deadlines=deadlines or {},
                approval_levels=approval_levels, department_id=department_id,
            )
        ).inserted_primary_key[0]
    )  # fmt: skip
    audit.record(conn, actor, "settings.case_template", f"template:{tid}", {"name": name})
    return tid


def list_templates(conn: Connection) -> list[dict[str, Any]]:
    return [
        {"id": r.id, "name": r.name, "origin": r.origin, "tasks": r.tasks,
         "deadlines": r.deadlines, "approval_levels": r.approval_levels,
         "department_id": r.department_id}
        for r in conn.execute(select(CaseTemplate.__table__).order_by(CaseTemplate.id)).all()
    ]  # fmt: skip
