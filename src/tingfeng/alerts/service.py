"""Alert rules, channels and alerts as the API, the pages and the command line use them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, delete, func, insert, select, update

from tingfeng import audit
from tingfeng.alerts.recipients import parse_recipients
from tingfeng.alerts.rules import RuleError, parse_conditions
from tingfeng.db.models import Alert, AlertLog, AlertRule, Channel, Delivery, Topic, User
from tingfeng.events.grading import Level
from tingfeng.problems import ProblemsError
from tingfeng.settings import Settings

RULE_FIELDS = (
    "name",
    "enabled",
    "conditions",
    "per",
    "recipients",
    "channel_ids",
    "level",
    "dedup_window_s",
    "rate_limit_per_hour",
    "digest_minutes",
    "escalate",
    "note",
)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


# --- rules ------------------------------------------------------------------------------------


def _checked_rule(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if "name" in out:
        out["name"] = str(out["name"]).strip()
        if not out["name"]:
            raise RuleError("A rule needs a name.")
    if "conditions" in out:
        raw = dict(out["conditions"] or {})
        if raw.get("regions"):
            from tingfeng.analyze.regions import region_codes

            try:
                raw["regions"] = region_codes(raw["regions"])
            except ValueError as exc:
                raise RuleError(f"Condition regions: {exc}") from exc
        conditions = parse_conditions(raw)
        if conditions.topic_ids:
            known = set(
                conn.execute(select(Topic.id).where(Topic.id.in_(conditions.topic_ids))).scalars()
            )
            missing = [t for t in conditions.topic_ids if t not in known]
            if missing:
                raise RuleError(f"No topic with id {missing[0]}: see `tingfeng topics list`.")
        out["conditions"] = conditions.model_dump(mode="json", exclude_defaults=True)
    if "recipients" in out:
        try:
            recipients = parse_recipients(conn, out["recipients"])
        except ProblemsError as exc:
            raise RuleError(str(exc)) from exc
        out["recipients"] = recipients.model_dump(exclude_defaults=True)
    if "channel_ids" in out:
        ids = [int(i) for i in out["channel_ids"] or []]
        known = set(conn.execute(select(Channel.id).where(Channel.id.in_(ids))).scalars())
        missing = [i for i in ids if i not in known]
        if missing:
            raise RuleError(f"No channel with id {missing[0]}: see `tingfeng alerts channels`.")
        out["channel_ids"] = ids
    if "per" in out and out["per"] not in ("event", "post"):
        raise RuleError('"per" is "event" (one alert per event) or "post" (one per post).')
    if "level" in out:
        try:
            out["level"] = str(Level(out["level"]))
        except ValueError as exc:
            raise RuleError("level is general, serious, major or critical.") from exc
    for name in ("dedup_window_s", "rate_limit_per_hour", "digest_minutes"):
        if name in out and (not isinstance(out[name], int) or out[name] < 0):
            raise RuleError(f"{name} must be a whole number, 0 or more.")
    return out


def create_rule(conn: Connection, values: dict[str, Any], now: datetime) -> dict[str, Any]:
    unknown = set(values) - set(RULE_FIELDS)
    if unknown:
        raise RuleError(f"Unknown rule field(s): {', '.join(sorted(unknown))}.")
    if "name" not in values:
        raise RuleError("A rule needs a name.")
    values = {"conditions": {}, "recipients": {}, **values}
    checked = _checked_rule(conn, values)
    if conn.execute(select(AlertRule.id).where(AlertRule.name == checked["name"])).first():
        raise RuleError(f"There is already a rule named {checked['name']!r}.")
    rule_id = conn.execute(
        insert(AlertRule).values(**checked, created_at=now, updated_at=now)
    ).inserted_primary_key[0]
    audit.record(conn, None, "settings.alert_rule_add", f"alert_rule:{rule_id}", checked, at=now)
    return get_rule(conn, rule_id)


def update_rule(
    conn: Connection, rule_id: int, values: dict[str, Any], now: datetime
) -> dict[str, Any]:
    get_rule(conn, rule_id)
    unknown = set(values) - set(RULE_FIELDS)
    if unknown:
        raise RuleError(f"Unknown rule field(s): {', '.join(sorted(unknown))}.")
    checked = _checked_rule(conn, values)
    conn.execute(update(AlertRule).where(AlertRule.id == rule_id).values(**checked, updated_at=now))
    audit.record(conn, None, "settings.alert_rule_change", f"alert_rule:{rule_id}", checked, at=now)
    return get_rule(conn, rule_id)


def delete_rule(conn: Connection, rule_id: int) -> None:
    get_rule(conn, rule_id)
    # Its alerts stay (rule_id becomes NULL); their reason keeps the rule's name.
    conn.execute(delete(AlertRule).where(AlertRule.id == rule_id))
    audit.record(conn, None, "settings.alert_rule_remove", f"alert_rule:{rule_id}", {})


def _rule_dict(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in ("id", *RULE_FIELDS)} | {
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def get_rule(conn: Connection, rule_id: int) -> dict[str, Any]:
    row = conn.execute(select(AlertRule.__table__).where(AlertRule.id == rule_id)).first()
    if row is None:
        raise RuleError(f"No alert rule {rule_id}: see `tingfeng alerts rules`.")
    return _rule_dict(row)


def find_rule(conn: Connection, ref: str | int) -> dict[str, Any]:
    text = str(ref).strip()
    if text.isdigit():
        return get_rule(conn, int(text))
    row = conn.execute(select(AlertRule.__table__).where(AlertRule.name == text)).first()
    if row is None:
        raise RuleError(f"No alert rule named {text!r}: see `tingfeng alerts rules`.")
    return _rule_dict(row)


def list_rules(conn: Connection) -> list[dict[str, Any]]:
    return [
        _rule_dict(r)
        for r in conn.execute(select(AlertRule.__table__).order_by(AlertRule.id)).all()
    ]


# --- channels ---------------------------------------------------------------------------------

SECRET_KEYS = ("secret", "password", "token")


_LONG_PART = 12


def masked_url(url: str) -> str:
    """A web address with what may be a token hidden: no user or password, long path parts
    shortened, no query (a WeCom or DingTalk address carries its key there)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    host = parts.netloc.rpartition("@")[2]
    path = "/".join(p if len(p) <= _LONG_PART else p[:4] + "***" for p in parts.path.split("/"))
    return f"{parts.scheme}://{host}{path}" + ("?***" if parts.query else "")


def _channel_dict(row: Any) -> dict[str, Any]:
    config = {
        k: ("***" if any(s in k for s in SECRET_KEYS) else v) for k, v in (row.config or {}).items()
    }
    target = row.target
    if row.kind == "webhook":
        # Every signed-in role may list channels: a token in the address stays hidden.
        target = masked_url(target)
    elif row.kind == "apprise" and "://" in target:
        scheme, _, rest = target.partition("://")
        target = f"{scheme}://{rest[:4]}***" if rest else target
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "target": target,
        "config": config,
        "enabled": row.enabled,
        "created_at": _iso(row.created_at),
    }


def create_channel(
    conn: Connection,
    settings: Settings,
    *,
    name: str,
    kind: str,
    target: str = "",
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from tingfeng.alerts.channels import ChannelError, check_channel

    name = name.strip()
    if not name:
        raise ChannelError("A channel needs a name.", permanent=True)
    if conn.execute(select(Channel.id).where(Channel.name == name)).first():
        raise ChannelError(f"There is already a channel named {name!r}.", permanent=True)
    target, config = check_channel(kind, target, config or {}, settings)
    channel_id = conn.execute(
        insert(Channel).values(name=name, kind=kind, target=target, config=config, enabled=True)
    ).inserted_primary_key[0]
    # The target and config may hold secrets (webhook keys): only the name and kind are logged.
    audit.record(conn, None, "settings.channel_add", f"channel:{channel_id}",
                 {"name": name, "kind": kind})  # fmt: skip
    return get_channel(conn, channel_id)


def get_channel(conn: Connection, channel_id: int) -> dict[str, Any]:
    from tingfeng.alerts.channels import ChannelError

    row = conn.execute(select(Channel.__table__).where(Channel.id == channel_id)).first()
    if row is None:
        raise ChannelError(
            f"No channel {channel_id}: see `tingfeng alerts channels`.", permanent=True
        )
    return _channel_dict(row)


def find_channel(conn: Connection, ref: str | int) -> Any:
    from tingfeng.alerts.channels import ChannelError

    text = str(ref).strip()
    q = select(Channel.__table__)
    row = conn.execute(
        q.where(Channel.id == int(text)) if text.isdigit() else q.where(Channel.name == text)
    ).first()
    if row is None:
        raise ChannelError(f"No channel {text!r}: see `tingfeng alerts channels`.", permanent=True)
    return row


def list_channels(conn: Connection) -> list[dict[str, Any]]:
    return [
        _channel_dict(r) for r in conn.execute(select(Channel.__table__).order_by(Channel.id)).all()
    ]


def set_channel_enabled(conn: Connection, channel_id: int, enabled: bool) -> None:
    get_channel(conn, channel_id)
    conn.execute(update(Channel).where(Channel.id == channel_id).values(enabled=enabled))
    audit.record(conn, None, "settings.channel_enable", f"channel:{channel_id}",
                 {"enabled": enabled})  # fmt: skip


def remove_channel(conn: Connection, channel_id: int) -> None:
    get_channel(conn, channel_id)
    for row in conn.execute(select(AlertRule.id, AlertRule.channel_ids)).all():
        if channel_id in (row.channel_ids or []):
            conn.execute(
                update(AlertRule)
                .where(AlertRule.id == row.id)
                .values(channel_ids=[c for c in row.channel_ids if c != channel_id])
            )
    conn.execute(delete(Channel).where(Channel.id == channel_id))
    audit.record(conn, None, "settings.channel_remove", f"channel:{channel_id}", {})


# --- alerts and the in-app list ---------------------------------------------------------------


def alert_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "rule_id": row.rule_id,
        "kind": row.kind,
        "subject": row.subject,
        "event_id": row.event_id,
        "post_id": row.post_id,
        "last_post_id": row.last_post_id,
        "hits": row.hits,
        "level": row.level,
        "level_zh": Level(row.level).zh if row.level in Level.__members__ else row.level,
        "title": row.title,
        "excerpt": row.excerpt,
        "url": row.url,
        "reason": row.reason,
        "status": row.status,
        "delivery": row.delivery,
        "acked_by": row.acked_by,
        "acked_at": _iso(row.acked_at),
        "acked_via": row.acked_via,
        "escalation_step": row.escalation_step,
        "next_escalation_at": _iso(row.next_escalation_at),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def list_alerts(
    conn: Connection,
    *,
    status: str | None = None,
    after_id: int = 0,
    event_id: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    q = select(Alert.__table__).order_by(Alert.id.desc()).limit(limit)
    if status:
        q = q.where(Alert.status == status)
    if after_id:
        q = q.where(Alert.id > after_id)
    if event_id is not None:
        q = q.where(Alert.event_id == event_id)
    return [alert_dict(r) for r in conn.execute(q).all()]


def alert_detail(conn: Connection, alert_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(Alert.__table__).where(Alert.id == alert_id)).first()
    if row is None:
        return None
    out = alert_dict(row)
    out["log"] = [
        {"at": _iso(r.at), "what": r.what, "by": r.by, "detail": r.detail}
        for r in conn.execute(
            select(AlertLog.__table__).where(AlertLog.alert_id == alert_id).order_by(AlertLog.id)
        ).all()
    ]
    names = dict(conn.execute(select(User.id, User.display_name)).all())
    channels = dict(conn.execute(select(Channel.id, Channel.name)).all())
    out["deliveries"] = [
        {
            "id": d.id,
            "purpose": d.purpose,
            "channel": channels.get(d.channel_id, "站内") if d.channel_id else "站内",
            "user": names.get(d.user_id) if d.user_id else None,
            "status": d.status,
            "attempts": d.attempts,
            "last_error": d.last_error,
            "sent_at": _iso(d.sent_at),
            "read_at": _iso(d.read_at),
        }
        for d in conn.execute(
            select(Delivery.__table__).where(Delivery.alert_id == alert_id).order_by(Delivery.id)
        ).all()
    ]
    return out


def inbox(
    conn: Connection, user_id: int, *, after_id: int = 0, unread_only: bool = False, limit: int = 50
) -> list[dict[str, Any]]:
    """A person's in-app messages, newest first."""
    q = (
        select(Delivery.__table__)
        .where(Delivery.user_id == user_id, Delivery.channel_id.is_(None))
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    if after_id:
        q = q.where(Delivery.id > after_id)
    if unread_only:
        q = q.where(Delivery.read_at.is_(None))
    return [
        {
            "id": d.id,
            "alert_id": d.alert_id,
            "purpose": d.purpose,
            "subject": d.message.get("subject"),
            "text": d.message.get("text"),
            "level": d.message.get("level"),
            "url": d.message.get("url"),
            "ack_url": d.message.get("ack_url"),
            "created_at": _iso(d.created_at),
            "read_at": _iso(d.read_at),
        }
        for d in conn.execute(q).all()
    ]


def unread_count(conn: Connection, user_id: int) -> int:
    return conn.execute(
        select(func.count(Delivery.id)).where(
            Delivery.user_id == user_id, Delivery.channel_id.is_(None), Delivery.read_at.is_(None)
        )
    ).scalar_one()


def mark_read(conn: Connection, user_id: int, delivery_ids: list[int] | None, now: datetime) -> int:
    q = update(Delivery).where(
        Delivery.user_id == user_id, Delivery.channel_id.is_(None), Delivery.read_at.is_(None)
    )
    if delivery_ids is not None:
        q = q.where(Delivery.id.in_(delivery_ids))
    return conn.execute(q.values(read_at=now)).rowcount or 0


def counts(conn: Connection) -> dict[str, int]:
    open_ = conn.execute(select(func.count(Alert.id)).where(Alert.status == "open")).scalar_one()
    failed = conn.execute(
        select(func.count(Delivery.id)).where(Delivery.status == "failed")
    ).scalar_one()
    pending = conn.execute(
        select(func.count(Delivery.id)).where(Delivery.status.in_(("pending", "sending")))
    ).scalar_one()
    return {"open": open_, "failed_deliveries": failed, "pending_deliveries": pending}


def failed_deliveries(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    channels = dict(conn.execute(select(Channel.id, Channel.name)).all())
    return [
        {
            "id": d.id,
            "alert_id": d.alert_id,
            "channel": channels.get(d.channel_id),
            "address": d.address,
            "attempts": d.attempts,
            "last_error": d.last_error,
            "subject": d.message.get("subject"),
        }
        for d in conn.execute(
            select(Delivery.__table__)
            .where(Delivery.status == "failed")
            .order_by(Delivery.id.desc())
            .limit(limit)
        ).all()
    ]
