"""Acknowledging an alert (确认收到): from the web, the API, or the link in a message.

The link carries a token signed with the installation's secret: it names the alert and, for a
message sent to one person, that person. Opening it shows the alert; acknowledging takes a
POST (mail scanners and chat previews open links, and must not acknowledge for anyone).
Acknowledging stops escalation; acknowledging twice changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from tingfeng.alerts import outbox
from tingfeng.db.models import Alert, AlertLog
from tingfeng.problems import ProblemsError


class AckError(ProblemsError):
    """The alert or the link is not valid; the message says what to do."""


def _sign(secret: bytes, payload: str) -> str:
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def ack_token(secret: bytes, alert_id: int, user_id: int | None = None) -> str:
    payload = f"{alert_id}.{user_id or 0}"
    return f"{payload}.{_sign(secret, payload)}"


@dataclass(frozen=True)
class AckToken:
    alert_id: int
    user_id: int | None


def read_token(secret: bytes, token: str) -> AckToken:
    try:
        alert, user, mac = token.split(".")
        alert_id, user_id = int(alert), int(user)
    except ValueError as exc:
        raise AckError("This acknowledge link is incomplete: open the whole link.") from exc
    if not hmac.compare_digest(mac, _sign(secret, f"{alert_id}.{user_id}")):
        raise AckError(
            "This acknowledge link is not valid (changed, or made by another installation)."
        )
    return AckToken(alert_id, user_id or None)


@dataclass(frozen=True)
class Acknowledged:
    alert_id: int
    by: str
    at: datetime
    via: str
    already: bool  # somebody had acknowledged it before


def acknowledge(
    conn: Connection,
    alert_id: int,
    *,
    by: str,
    via: str,
    now: datetime,
    user_id: int | None = None,
) -> Acknowledged:
    row = conn.execute(select(Alert.__table__).where(Alert.id == alert_id)).first()
    if row is None:
        raise AckError(f"No alert {alert_id}.")
    if row.status == "acknowledged":
        return Acknowledged(alert_id, row.acked_by or "", row.acked_at, row.acked_via or "", True)
    by = (by or "").strip()[:200]
    if not by:
        raise AckError("Say who acknowledges the alert.")
    conn.execute(
        update(Alert)
        .where(Alert.id == alert_id)
        .values(
            status="acknowledged",
            acked_by=by,
            acked_by_user_id=user_id,
            acked_at=now,
            acked_via=via,
            next_escalation_at=None,
            updated_at=now,
        )
    )
    cancelled = outbox.cancel_pending(conn, alert_id, ("escalation",))
    conn.execute(
        insert(AlertLog).values(
            alert_id=alert_id,
            at=now,
            what="acknowledged",
            by=by,
            detail={"via": via, "user_id": user_id, "escalations_cancelled": cancelled},
        )
    )
    return Acknowledged(alert_id, by, now, via, False)
