"""Who an alert goes to: named people, everyone with a role, a department (and those under it),
and whoever is on duty at the moment (tingfeng.alerts.duty)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, select

from tingfeng.db.models import User
from tingfeng.office.people import ROLES, Person, canonical_role, department_and_below
from tingfeng.problems import ProblemsError


class RecipientsError(ProblemsError):
    """A recipients list names nobody valid; the message says which entry."""


class Recipients(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_ids: list[int] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    department_ids: list[int] = Field(default_factory=list)
    on_duty: bool = False
    duty_roles: list[str] = Field(default_factory=list)  # A, B; empty: every duty role

    @property
    def empty(self) -> bool:
        return not (self.user_ids or self.roles or self.department_ids or self.on_duty)


def parse_recipients(conn: Connection, value: dict | None) -> Recipients:
    """Validate a recipients spec against the office: unknown people or roles are errors."""
    try:
        r = Recipients.model_validate(value or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RecipientsError(
            f"Recipients {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from exc
    bad_roles = [x for x in r.roles if canonical_role(x) is None]
    if bad_roles:
        raise RecipientsError(f"Unknown role {bad_roles[0]!r}: use one of {', '.join(ROLES)}.")
    r.roles = [canonical_role(x) or x for x in r.roles]
    if r.user_ids:
        known = set(conn.execute(select(User.id).where(User.id.in_(r.user_ids))).scalars())
        missing = [u for u in r.user_ids if u not in known]
        if missing:
            raise RecipientsError(f"No user with id {missing[0]}: see `tingfeng people list`.")
    return r


def resolve(
    conn: Connection, spec: Recipients | dict | None, at: datetime, tz: str
) -> list[Person]:
    """The active people a spec names at time `at`, each once, in a stable order."""
    r = spec if isinstance(spec, Recipients) else Recipients.model_validate(spec or {})
    ids: set[int] = set(r.user_ids)
    if r.on_duty:
        from tingfeng.alerts.duty import on_duty

        ids.update(
            d.user_id for d in on_duty(conn, at, tz) if not r.duty_roles or d.role in r.duty_roles
        )
    q = select(User.__table__).where(User.active.is_(True))
    rows = []
    if r.roles or r.department_ids:
        departments = department_and_below(conn, r.department_ids) if r.department_ids else set()
        # Specs written before the roles were renamed (director, head) still reach the people.
        roles = {canonical_role(x) or x for x in r.roles}
        for row in conn.execute(q).all():
            if row.role in roles or (row.department_id in departments):
                ids.add(row.id)
    if ids:
        rows = conn.execute(q.where(User.id.in_(ids)).order_by(User.id)).all()
    return [Person.of(row) for row in rows]
