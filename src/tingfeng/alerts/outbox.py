"""The outbox: messages written in the same transaction as what caused them, then sent.

A delivery's `key` is unique, so writing the same message twice (a batch re-run after a crash, a
clock tick run by two processes) adds nothing. Sending claims a delivery for a lease: a process
that dies mid-send leaves it to be claimed again when the lease ends, and it goes out again
with the same key (receivers can drop the repeat by `Idempotency-Key` / `Message-ID`). A
channel that is down gets the message later (exponential backoff), never loses it; after
`delivery_max_attempts` it is marked failed and shown on the alerts page, where it can be retried.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tingfeng.alerts.messages import Message
from tingfeng.db.models import Delivery
from tingfeng.settings import Settings

# Set when a process writes deliveries, so its dispatcher sends them at once instead of at
# the next poll (other processes' deliveries are found by polling, `outbox_poll_s`).
_WAKE = threading.Event()


def notify() -> None:
    _WAKE.set()


def wait(timeout: float) -> bool:
    woke = _WAKE.wait(timeout)
    _WAKE.clear()
    return woke


@dataclass(frozen=True)
class Outgoing:
    """One message to write: to a person in-app (channel None), or on a channel."""

    key: str
    purpose: str
    message: Message
    alert_id: int | None = None
    channel_id: int | None = None
    user_id: int | None = None
    address: str | None = None


def write(conn: Connection, items: list[Outgoing], now: datetime) -> int:
    """Write deliveries not written before; in-app ones are delivered by being written."""
    if not items:
        return 0
    rows = [
        {
            "key": o.key,
            "alert_id": o.alert_id,
            "purpose": o.purpose,
            "channel_id": o.channel_id,
            "user_id": o.user_id,
            "address": o.address,
            "message": o.message.to_dict(),
            "status": "sent" if o.channel_id is None else "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "sent_at": now if o.channel_id is None else None,
            "created_at": now,
        }
        for o in items
    ]
    result = conn.execute(_insert_new(conn.dialect.name), rows)
    return max(result.rowcount or 0, 0)


_INSERTS: dict[str, Any] = {}


def _insert_new(dialect: str) -> Any:
    """INSERT … ON CONFLICT (key) DO NOTHING, built once (building it costs more than running it)."""
    if dialect not in _INSERTS:
        table = Delivery.__table__
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        _INSERTS[dialect] = insert(table).on_conflict_do_nothing(index_elements=["key"])
    return _INSERTS[dialect]


@dataclass(frozen=True)
class Claimed:
    id: int
    key: str
    channel_id: int
    address: str | None
    message: Message
    attempts: int


def claim(
    conn: Connection, now: datetime, *, limit: int = 50, lease_s: float = 30.0
) -> list[Claimed]:
    """Take up to `limit` due deliveries for `lease_s` seconds (call in a write transaction)."""
    due = or_(
        and_(Delivery.status == "pending", Delivery.next_attempt_at <= now),
        and_(Delivery.status == "sending", Delivery.lease_until < now),
    )
    q = (
        select(Delivery.__table__)
        .where(due)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    rows = conn.execute(q).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    conn.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids))
        .values(
            status="sending",
            lease_until=now + timedelta(seconds=lease_s),
            attempts=Delivery.attempts + 1,
        )
    )
    return [
        Claimed(r.id, r.key, r.channel_id, r.address, Message.from_dict(r.message), r.attempts + 1)
        for r in rows
    ]


def release(conn: Connection, delivery_ids: list[int]) -> None:
    """Give back claimed deliveries that were not tried (a stopping sender)."""
    if delivery_ids:
        conn.execute(
            update(Delivery)
            .where(Delivery.id.in_(delivery_ids), Delivery.status == "sending")
            .values(status="pending", lease_until=None, attempts=Delivery.attempts - 1)
        )


def backoff(settings: Settings, attempts: int) -> float:
    return min(settings.delivery_max_backoff_s, settings.delivery_backoff_s * 2 ** (attempts - 1))


def mark_sent(conn: Connection, delivery_id: int, now: datetime) -> None:
    conn.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status == "sending")
        .values(status="sent", sent_at=now, lease_until=None, last_error=None)
    )


def mark_failed(
    conn: Connection,
    item: Claimed,
    error: str,
    now: datetime,
    settings: Settings,
    *,
    permanent: bool = False,
) -> str:
    """Retry later, or give up; returns the new status."""
    give_up = permanent or item.attempts >= settings.delivery_max_attempts
    status = "failed" if give_up else "pending"
    conn.execute(
        update(Delivery)
        .where(Delivery.id == item.id, Delivery.status == "sending")
        .values(
            status=status,
            lease_until=None,
            last_error=error[:2000],
            next_attempt_at=now + timedelta(seconds=backoff(settings, item.attempts)),
        )
    )
    return status


def retry(conn: Connection, delivery_ids: list[int] | None, now: datetime) -> int:
    """Send failed deliveries again (all of them when `delivery_ids` is None)."""
    q = update(Delivery).where(Delivery.status == "failed")
    if delivery_ids is not None:
        q = q.where(Delivery.id.in_(delivery_ids))
    result = conn.execute(q.values(status="pending", attempts=0, next_attempt_at=now))
    return result.rowcount or 0


def cancel_pending(conn: Connection, alert_id: int, purposes: tuple[str, ...]) -> int:
    result = conn.execute(
        update(Delivery)
        .where(
            Delivery.alert_id == alert_id,
            Delivery.purpose.in_(purposes),
            Delivery.status == "pending",
        )
        .values(status="cancelled")
    )
    return result.rowcount or 0
