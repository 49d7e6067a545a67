"""Administering sign-in accounts and departments (系统管理): what the administration pages do.

Each change is written to the audit log in the same transaction, under the administrator who
made it. Two rules keep an installation manageable: nobody disables or demotes themselves, and
the last active administrator cannot be disabled or demoted (else nobody could undo it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from tingfeng import audit
from tingfeng.db.models import Department, User, WebSession
from tingfeng.office.people import (
    OfficeError,
    Person,
    add_department,
    add_user,
    canonical_role,
    find_department,
    get_user,
    set_password,
    update_user,
)


def list_accounts(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    """Every account with its department's name and whether it is locked out now."""
    names = dict(conn.execute(select(Department.id, Department.name)).all())
    rows = conn.execute(select(User.__table__).order_by(User.id)).all()
    return [
        {
            **Person.of(r).as_dict(),
            "department": names.get(r.department_id),
            "locked": r.locked_until is not None and r.locked_until > now,
            "locked_until": r.locked_until.isoformat() if r.locked_until else None,
            "failed_logins": r.failed_logins or 0,
            "has_password": bool(r.password_hash),
            "created_at": r.created_at.isoformat() if r.created_at else None,
        }
        for r in rows
    ]


def create_account(
    conn: Connection,
    actor: Any,
    username: str,
    password: str,
    *,
    display_name: str | None = None,
    role: str = "analyst",
    department: str | int | None = None,
    email: str | None = None,
    phone: str | None = None,
) -> Person:
    """A person who can sign in at once with `password`."""
    person = add_user(
        conn, username, display_name or None, role=role, department=department or None,
        email=email or None, phone=phone or None,
    )  # fmt: skip
    set_password(conn, person.id, password)
    audit.record(conn, actor, "settings.user_add", f"user:{person.id}",
                 {"username": person.username, "role": person.role,
                  "department_id": person.department_id})  # fmt: skip
    return person


def _active_admins(conn: Connection) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(User)
            .where(User.role == "admin", User.active.is_(True))
        ).scalar_one()
    )


def _keep_an_admin(conn: Connection, actor: Any, person: Person, what: str) -> None:
    if actor is not None and getattr(actor, "id", None) == person.id:
        raise OfficeError(f"You cannot {what} your own account; ask another administrator.")
    if person.role == "admin" and person.active and _active_admins(conn) <= 1:
        raise OfficeError(f"{person.username} is the last administrator: add another first.")


def change_account(conn: Connection, actor: Any, user_id: int, **values: Any) -> Person:
    """Change the role, department, name or contact details of an account.

    `department` is a department's id or name; "" or None leaves the person without one.
    """
    person = get_user(conn, user_id)
    changes: dict[str, Any] = {}
    if "role" in values and values["role"] is not None:
        role = canonical_role(str(values["role"]))
        if role is None:
            raise OfficeError(f"Unknown role {values['role']!r}.")
        if role != person.role:
            if person.role == "admin":
                _keep_an_admin(conn, actor, person, "demote")
            changes["role"] = role
    if "department" in values:
        ref = values["department"]
        department_id = find_department(conn, ref) if ref not in (None, "") else None
        if department_id != person.department_id:
            changes["department_id"] = department_id
    for field in ("display_name", "email", "phone"):
        if field in values and values[field] is not None:
            value = str(values[field]).strip() or None
            if field == "display_name" and not value:
                raise OfficeError("A display name cannot be empty.")
            if value != getattr(person, field):
                changes[field] = value
    if not changes:
        return person
    updated = update_user(conn, user_id, **changes)
    audit.record(conn, actor, "settings.user_change", f"user:{user_id}",
                 {"username": person.username, **changes})  # fmt: skip
    return updated


def set_active(conn: Connection, actor: Any, user_id: int, active: bool) -> Person:
    """Disable (sessions end at once, tokens stop working) or enable an account."""
    person = get_user(conn, user_id)
    if person.active == active:
        return person
    if not active:
        _keep_an_admin(conn, actor, person, "disable")
        conn.execute(delete(WebSession).where(WebSession.user_id == user_id))
    updated = update_user(conn, user_id, active=active)
    audit.record(conn, actor, "settings.user_enable" if active else "settings.user_disable",
                 f"user:{user_id}", {"username": person.username})  # fmt: skip
    return updated


def reset_password(
    conn: Connection, actor: Any, user_id: int, password: str, now: datetime
) -> Person:
    """Set a new password for someone who forgot theirs; their sessions end, a lock is lifted."""
    person = get_user(conn, user_id)
    set_password(conn, user_id, password)
    conn.execute(
        update(User)
        .where(User.id == user_id)
        .values(password_changed_at=now, failed_logins=0, locked_until=None)
    )
    conn.execute(delete(WebSession).where(WebSession.user_id == user_id))
    audit.record(conn, actor, "settings.user_password", f"user:{user_id}",
                 {"username": person.username})  # fmt: skip
    return person


def unlock(conn: Connection, actor: Any, user_id: int) -> Person:
    """Lift a lock-out after too many wrong passwords."""
    person = get_user(conn, user_id)
    conn.execute(update(User).where(User.id == user_id).values(failed_logins=0, locked_until=None))
    audit.record(conn, actor, "user.unlock", f"user:{user_id}", {"username": person.username})
    return person


def create_department(
    conn: Connection, actor: Any, name: str, parent: str | int | None = None
) -> int:
    department_id = add_department(conn, name, parent or None)
    audit.record(conn, actor, "settings.department_add", f"department:{department_id}",
                 {"name": name.strip(), "parent": parent or None})  # fmt: skip
    return department_id


def department_tree(conn: Connection) -> list[dict[str, Any]]:
    """Departments as a forest: each {id, name, parent_id, members, children: [...]}."""
    members = dict(
        conn.execute(
            select(User.department_id, func.count())
            .where(User.active.is_(True), User.department_id.is_not(None))
            .group_by(User.department_id)
        ).all()
    )
    rows = conn.execute(
        select(Department.id, Department.name, Department.parent_id).order_by(Department.id)
    ).all()
    nodes = {
        r.id: {"id": r.id, "name": r.name, "parent_id": r.parent_id,
               "members": int(members.get(r.id, 0)), "children": []}
        for r in rows
    }  # fmt: skip
    roots = []
    for node in nodes.values():
        parent = nodes.get(node["parent_id"]) if node["parent_id"] is not None else None
        (parent["children"] if parent is not None else roots).append(node)
    return roots


def flatten(tree: list[dict[str, Any]], depth: int = 0) -> list[dict[str, Any]]:
    """The tree in display order, each node with its depth (for indented lists and selects)."""
    out: list[dict[str, Any]] = []
    for node in tree:
        out.append({**node, "depth": depth})
        out.extend(flatten(node["children"], depth + 1))
    return out
