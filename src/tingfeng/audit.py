"""The audit log (操作日志): every action on cases, replies, evidence, grades and settings.

Append only. Each entry's hash covers its own fields and the hash of the entry before it, so
changing or removing any entry breaks the chain from there on, and `verify` names the first
entry that no longer fits. Entries are written in the same transaction as the action they
record: an action that rolls back leaves no entry, and an entry never describes something that
did not happen.

Appends are serialised (the chain has one head): SQLite writes are serialised anyway; on
PostgreSQL a transaction-scoped advisory lock is taken before reading the head.
"""

from __future__ import annotations

import hashlib
import json
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, text

from tingfeng.db.models import AuditEntry

GENESIS = "0" * 64
# Any constant works; it only has to be the same for every writer of the chain.
_PG_LOCK_KEY = 0x7466_6175_6469  # "tfaudi"


@dataclass(frozen=True)
class Actor:
    """Who did it: a signed-in person, or "system" (the clock, a relapse watch)."""

    user_id: int | None
    name: str

    @classmethod
    def of(cls, person: Any) -> Actor:
        if person is None:
            return SYSTEM
        if isinstance(person, Actor):
            return person
        return cls(int(person.id), str(person.username))


SYSTEM = Actor(None, "system")
# Who is acting in this request (set by the web guard for the signed-in person), so services
# that do not take an actor (alert rules, channels, topics, sources…) still log the person.
current_actor: ContextVar[Actor] = ContextVar("tingfeng_audit_actor", default=SYSTEM)


def _canonical_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(
    prev_hash: str,
    at: datetime,
    user_id: int | None,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any],
) -> str:
    """SHA-256 over the previous hash and the entry's fields in a canonical JSON form."""
    body = json.dumps(
        [prev_hash, _canonical_time(at), user_id, actor, action, subject, detail],
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _jsonable(detail: dict[str, Any] | None) -> dict[str, Any]:
    # Round-trip now so the hash is computed over exactly what the JSON column gives back.
    return json.loads(json.dumps(detail or {}, ensure_ascii=False, default=str))


def record(
    conn: Connection,
    actor: Any,
    action: str,
    subject: str = "",
    detail: dict[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> int:
    """Append one entry in the caller's transaction; returns its id.

    `actor` is a Person (anything with `id` and `username`), an Actor, or None: the person
    signed in to the current request, or the system outside one.
    """
    who = Actor.of(actor) if actor is not None else current_actor.get()
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    head = conn.execute(
        select(AuditEntry.__table__.c.hash).order_by(AuditEntry.__table__.c.id.desc()).limit(1)
    ).scalar()
    prev = head or GENESIS
    # Microseconds are kept: the hash covers the stored time, and both databases keep them.
    when = (at or datetime.now(UTC)).astimezone(UTC)
    payload = _jsonable(detail)
    digest = entry_hash(prev, when, who.user_id, who.name, action, subject, payload)
    return int(
        conn.execute(
            insert(AuditEntry).values(
                at=when,
                user_id=who.user_id,
                actor=who.name,
                action=action,
                subject=subject,
                detail=payload,
                prev_hash=prev,
                hash=digest,
            )
        ).inserted_primary_key[0]
    )


@dataclass(frozen=True)
class VerifyResult:
    entries: int
    bad_id: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.bad_id is None


def verify(conn: Connection, *, batch: int = 5000) -> VerifyResult:
    """Walk the chain from the start; the first entry that does not fit is reported.

    An entry fits when its stored hash is the hash of its fields and of the entry before it.
    An edited entry fails its own hash; a removed one leaves the next entry pointing at a hash
    that is not the one before it; an entry's hash rewritten to hide an edit breaks the next.
    """
    t = AuditEntry.__table__
    prev = GENESIS
    count = 0
    last_id = 0
    while True:
        rows = conn.execute(select(t).where(t.c.id > last_id).order_by(t.c.id).limit(batch)).all()
        if not rows:
            return VerifyResult(count)
        for row in rows:
            if row.prev_hash != prev:
                return VerifyResult(
                    count,
                    row.id,
                    f"entry {row.id} follows a different entry than the one before it "
                    "(an entry before it was removed or altered)",
                )
            expected = entry_hash(
                prev, row.at, row.user_id, row.actor, row.action, row.subject, row.detail or {}
            )
            if row.hash != expected:
                return VerifyResult(
                    count, row.id, f"entry {row.id} was altered after it was written"
                )
            prev = row.hash
            count += 1
            last_id = row.id


def entries(
    conn: Connection,
    *,
    subject: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """Newest first; `subject` ("case:3") narrows to one thing's history."""
    t = AuditEntry.__table__
    q = select(t).order_by(t.c.id.desc()).limit(limit)
    if subject:
        q = q.where(t.c.subject == subject)
    if before_id:
        q = q.where(t.c.id < before_id)
    return [
        {
            "id": r.id,
            "at": r.at.isoformat(),
            "user_id": r.user_id,
            "actor": r.actor,
            "action": r.action,
            "subject": r.subject,
            "detail": r.detail,
            "hash": r.hash,
        }
        for r in conn.execute(q).all()
    ]
