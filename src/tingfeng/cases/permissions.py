"""Who sees and acts on which cases: role × department × action.

- admin, analyst (监测员), viewer: every case (the viewer only reads).
- approver (领导): the cases of their department and the departments under it; one whose
  department is at the top (or who has none) also sees the cases no department holds yet.
- handler (经办人): the cases of their department (and those under it), once assigned there.
- liaison (联络员): the cases they opened (their leads).

Which actions a role may take at all, and from which states, is `tingfeng.cases.states`; this
module adds the department scope and answers "may this person do this to this case".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.sql.elements import ColumnElement

from tingfeng.cases.states import TransitionError, check, check_role
from tingfeng.db.models import Case, Department
from tingfeng.office.people import Person, department_and_below

EVERYWHERE = frozenset({"admin", "analyst", "viewer"})
# Actions that are not state changes but still need a hand on the case.
WORK_ROLES = frozenset({"admin", "analyst", "approver", "handler"})


class PermissionDenied(TransitionError):
    """The person may not see or act on this case; the message says why."""


@dataclass(frozen=True)
class Scope:
    """The cases a person sees: all, or those of some departments (and maybe unassigned ones)."""

    everything: bool
    departments: frozenset[int] = frozenset()
    unassigned: bool = False
    own_user_id: int | None = None  # a liaison: the cases they opened

    def covers(self, case: Any) -> bool:
        if self.everything:
            return True
        if self.own_user_id is not None:
            return bool(case.created_by == self.own_user_id)
        if case.department_id is None:
            return self.unassigned
        return case.department_id in self.departments

    def where(self) -> ColumnElement[bool] | None:
        """The same as a filter on `cases`, for lists; None means no filter."""
        if self.everything:
            return None
        if self.own_user_id is not None:
            return Case.created_by == self.own_user_id
        clause = Case.department_id.in_(sorted(self.departments))
        return clause | Case.department_id.is_(None) if self.unassigned else clause


def scope_of(conn: Connection, person: Person) -> Scope:
    if person.role in EVERYWHERE:
        return Scope(True)
    if person.role == "liaison":
        return Scope(False, own_user_id=person.id)
    if person.department_id is None:
        # An approver without a department leads the whole office; a handler without one
        # belongs nowhere yet and sees nothing.
        return Scope(person.role == "approver", unassigned=person.role == "approver")
    departments = frozenset(department_and_below(conn, [person.department_id]))
    top = (
        conn.execute(
            select(Department.parent_id).where(Department.id == person.department_id)
        ).scalar()
        is None
    )
    return Scope(False, departments, unassigned=person.role == "approver" and top)


def can_see(conn: Connection, person: Person, case: Any) -> bool:
    return person.active and scope_of(conn, person).covers(case)


def require_see(conn: Connection, person: Person, case: Any) -> None:
    if not can_see(conn, person, case):
        raise PermissionDenied(f"{person.username} may not see case {case.number}.")


def require_action(conn: Connection, person: Person, case: Any, name: str) -> None:
    """TransitionError/PermissionDenied unless `person` may take action `name` on `case` now."""
    if not person.active:
        raise PermissionDenied(f"{person.username} is not active.")
    # The role, then the scope, then the state: someone outside the case's department
    # learns nothing of its state.
    check_role(name, person.role)
    if not scope_of(conn, person).covers(case):
        raise PermissionDenied(
            f"{person.username} ({person.role}) may not act on case {case.number}: it belongs "
            "to a department outside theirs."
        )
    check(name, case.state, person.role)


def require_work(conn: Connection, person: Person, case: Any, what: str) -> None:
    """For work inside a case that is not a state change (tasks, progress notes, evidence)."""
    if not person.active or person.role not in WORK_ROLES:
        raise PermissionDenied(f"The {person.role} role may not {what}.")
    if not scope_of(conn, person).covers(case):
        raise PermissionDenied(
            f"{person.username} may not {what} on case {case.number}: it belongs to a "
            "department outside theirs."
        )
