"""People of the office and their departments: who receives alerts, who is on duty.

Roles say what someone does in the office; the duty roles (A/B of a shift) are separate and
live with the roster (tingfeng.alerts.duty).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from tingfeng.db.models import Department, User
from tingfeng.problems import ProblemsError

# director 主任/分管领导, head 科室负责人, analyst 信息员/值班员, liaison 联络员, admin 管理员,
# viewer 只读
ROLES: dict[str, str] = {
    "admin": "管理员",
    "director": "领导",
    "head": "科室负责人",
    "analyst": "信息员",
    "liaison": "联络员",
    "viewer": "只读",
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_USERNAME = re.compile(r"^[\w.\-]{1,100}$")


class OfficeError(ProblemsError):
    """A person or department could not be added or found; the message says why."""


@dataclass(frozen=True)
class Person:
    id: int
    username: str
    display_name: str
    role: str
    department_id: int | None
    email: str | None
    phone: str | None
    active: bool

    @classmethod
    def of(cls, row: Any) -> Person:
        return cls(
            row.id, row.username, row.display_name, row.role, row.department_id,
            row.email, row.phone, row.active,
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role,
            "department_id": self.department_id,
            "email": self.email,
            "phone": self.phone,
            "active": self.active,
        }


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise OfficeError(f"Unknown role {role!r}: use one of {', '.join(ROLES)}.")
    return role


def add_department(conn: Connection, name: str, parent: str | int | None = None) -> int:
    name = name.strip()
    if not name:
        raise OfficeError("A department needs a name.")
    if conn.execute(select(Department.id).where(Department.name == name)).first():
        raise OfficeError(f"There is already a department named {name!r}.")
    parent_id = find_department(conn, parent) if parent not in (None, "") else None
    return int(
        conn.execute(
            insert(Department).values(name=name, parent_id=parent_id)
        ).inserted_primary_key[0]
    )


def find_department(conn: Connection, ref: str | int | None) -> int:
    """A department by id or name."""
    text = str(ref).strip()
    q = select(Department.id)
    row = conn.execute(
        q.where(Department.id == int(text)) if text.isdigit() else q.where(Department.name == text)
    ).first()
    if row is None:
        raise OfficeError(f"No department {text!r}: see `tingfeng people departments`.")
    return int(row[0])


def list_departments(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(Department).order_by(Department.id)).all()
    return [{"id": r.id, "name": r.name, "parent_id": r.parent_id} for r in rows]


def department_and_below(conn: Connection, department_ids: list[int]) -> set[int]:
    """The departments and every department under them (a message to 宣传部 reaches its 科室)."""
    children: dict[int | None, list[int]] = {}
    for did, parent in conn.execute(select(Department.id, Department.parent_id)).all():
        children.setdefault(parent, []).append(did)
    out: set[int] = set()
    todo = list(department_ids)
    while todo:
        did = todo.pop()
        if did in out:
            continue
        out.add(did)
        todo.extend(children.get(did, []))
    return out


def add_user(
    conn: Connection,
    username: str,
    display_name: str | None = None,
    *,
    role: str = "analyst",
    department: str | int | None = None,
    email: str | None = None,
    phone: str | None = None,
) -> Person:
    username = username.strip()
    if not _USERNAME.match(username):
        raise OfficeError(
            f"User name {username!r} is not valid: letters, digits, '.', '-' or '_', at most 100."
        )
    if conn.execute(select(User.id).where(User.username == username)).first():
        raise OfficeError(f"There is already a user named {username!r}.")
    if email and not _EMAIL.match(email.strip()):
        raise OfficeError(f"{email!r} is not an e-mail address.")
    department_id = find_department(conn, department) if department not in (None, "") else None
    uid = conn.execute(
        insert(User).values(
            username=username,
            display_name=(display_name or username).strip(),
            role=_check_role(role),
            department_id=department_id,
            email=email.strip() if email else None,
            phone=phone.strip() if phone else None,
            active=True,
        )
    ).inserted_primary_key[0]
    return get_user(conn, int(uid))


def get_user(conn: Connection, user_id: int) -> Person:
    row = conn.execute(select(User).where(User.id == user_id)).first()
    if row is None:
        raise OfficeError(f"No user with id {user_id}.")
    return Person.of(row)


def find_user(conn: Connection, ref: str | int) -> Person:
    """A user by id or user name."""
    text = str(ref).strip()
    if text.isdigit():
        return get_user(conn, int(text))
    row = conn.execute(select(User).where(User.username == text)).first()
    if row is None:
        raise OfficeError(f"No user {text!r}: see `tingfeng people list`.")
    return Person.of(row)


def list_users(conn: Connection, *, active_only: bool = False) -> list[Person]:
    q = select(User).order_by(User.id)
    if active_only:
        q = q.where(User.active.is_(True))
    return [Person.of(r) for r in conn.execute(q).all()]


def update_user(conn: Connection, user_id: int, **values: Any) -> Person:
    allowed = {"display_name", "role", "department_id", "email", "phone", "active"}
    unknown = set(values) - allowed
    if unknown:
        raise OfficeError(f"Cannot change {', '.join(sorted(unknown))} of a user here.")
    if "role" in values:
        _check_role(values["role"])
    if values.get("email") and not _EMAIL.match(values["email"]):
        raise OfficeError(f"{values['email']!r} is not an e-mail address.")
    get_user(conn, user_id)
    conn.execute(update(User).where(User.id == user_id).values(**values))
    return get_user(conn, user_id)
