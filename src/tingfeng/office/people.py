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

# What each role may do to cases is in tingfeng.cases.permissions; for alerts a role is a group
# of recipients. admin 管理员; approver 领导 (approves handling and replies for the departments
# under theirs); handler 经办人 (acts on their department's cases); analyst 监测员 (watches
# everything, opens and assesses cases); liaison 联络员 (reports leads); viewer 只读.
ROLES: dict[str, str] = {
    "admin": "管理员",
    "approver": "领导",
    "handler": "经办人",
    "analyst": "监测员",
    "liaison": "联络员",
    "viewer": "只读",
}
# Other names people use for the same roles (and the names of earlier versions: director,
# head), accepted wherever a role is given and stored as the canonical name.
ROLE_ALIASES: dict[str, str] = {
    "administrator": "admin",
    "管理员": "admin",
    "director": "approver",
    "head": "approver",
    "leader": "approver",
    "领导": "approver",
    "审批人": "approver",
    "科室负责人": "approver",
    "经办人": "handler",
    "监测员": "analyst",
    "信息员": "analyst",
    "值班员": "analyst",
    "联络员": "liaison",
    "只读": "viewer",
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


def canonical_role(role: str) -> str | None:
    """The role's canonical name, or None when it is no role at all."""
    name = role.strip()
    if name in ROLES:
        return name
    return ROLE_ALIASES.get(name.lower(), ROLE_ALIASES.get(name))


def _check_role(role: str) -> str:
    canonical = canonical_role(role)
    if canonical is None:
        raise OfficeError(f"Unknown role {role!r}: use one of {', '.join(ROLES)}.")
    return canonical


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
        values["role"] = _check_role(values["role"])
    if values.get("email") and not _EMAIL.match(values["email"]):
        raise OfficeError(f"{values['email']!r} is not an e-mail address.")
    get_user(conn, user_id)
    conn.execute(update(User).where(User.id == user_id).values(**values))
    return get_user(conn, user_id)


MIN_PASSWORD = 8


def set_password(conn: Connection, user_id: int, password: str) -> None:
    """Store the argon2 hash of a new password (never the password)."""
    from argon2 import PasswordHasher

    if len(password) < MIN_PASSWORD:
        raise OfficeError(f"A password needs at least {MIN_PASSWORD} characters.")
    get_user(conn, user_id)
    conn.execute(
        update(User).where(User.id == user_id).values(password_hash=PasswordHasher().hash(password))
    )


def check_password(conn: Connection, username: str, password: str) -> Person | None:
    """The active person with this user name and password, or None (for either being wrong)."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    row = conn.execute(select(User).where(User.username == username.strip())).first()
    hasher = PasswordHasher()
    if row is None or not row.active or not row.password_hash:
        # Hash anyway, so the time taken does not tell which user names exist.
        hasher.hash(password or "x")
        return None
    try:
        hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return Person.of(row)
