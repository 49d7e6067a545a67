"""The alerts API (预警): the list, acknowledging, the in-app inbox, rules, channels,
escalation policies and failed deliveries.

The pages are in `alert_pages` (the list, one alert, the acknowledge link) and `alert_settings`
(rules, channels, escalation); `register` here adds them all. Who acts is the signed-in person
(tingfeng.web.guard). The acknowledge link's token is its own authorisation: it is signed with
the installation's secret and names the alert (and the person the message went to).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy import Connection, func, select

from tingfeng.alerts import outbox
from tingfeng.alerts.ack import AckError, acknowledge
from tingfeng.alerts.channels import ChannelError, ChannelSpec, send
from tingfeng.alerts.escalation import EscalationError, load_policies, set_policy
from tingfeng.alerts.messages import render
from tingfeng.alerts.rules import RuleError
from tingfeng.alerts.service import (
    alert_detail,
    counts,
    create_channel,
    create_rule,
    delete_rule,
    failed_deliveries,
    find_channel,
    get_rule,
    inbox,
    list_alerts,
    list_channels,
    list_rules,
    mark_read,
    remove_channel,
    unread_count,
    update_rule,
)
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import Alert, AlertRule, Channel
from tingfeng.events.grading import Level
from tingfeng.office.people import OfficeError, get_user
from tingfeng.settings import Settings
from tingfeng.web.guard import require_user

T = TypeVar("T")

STATUSES = ("open", "acknowledged")


class AckIn(BaseModel):
    """Who acknowledges is the signed-in person; only the way it was done is sent."""

    via: Literal["api", "web"] = "api"


class ReadIn(BaseModel):
    user_id: int | None = None
    ids: list[int] | None = Field(None, max_length=10_000)


class ChannelIn(BaseModel):
    name: str = Field(max_length=200)
    kind: str
    target: str = Field("", max_length=4000)
    config: dict[str, Any] = Field(default_factory=dict)


class ChannelTestIn(BaseModel):
    address: str | None = Field(None, max_length=254)  # for an e-mail channel without a mailbox


class PolicyIn(BaseModel):
    steps: list[dict[str, Any]] = Field(default_factory=list, max_length=50)
    repeat_minutes: int = 0
    max_repeats: int = 0


class RetryIn(BaseModel):
    ids: list[int] | None = Field(None, max_length=10_000)


def _now() -> datetime:
    return datetime.now(UTC)


def _exists(conn: Connection, model: Any, row_id: int) -> bool:
    return conn.execute(select(model.id).where(model.id == row_id)).first() is not None


def rename_safe_update(
    conn: Connection, rule_id: int, values: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """`update_rule`, refusing a name another rule has (the unique index would fail with a 500)."""
    name = str(values.get("name") or "").strip()
    if (
        name
        and conn.execute(
            select(AlertRule.id).where(AlertRule.name == name, AlertRule.id != rule_id)
        ).first()
    ):
        raise RuleError(f"There is already a rule named {name!r}.")
    return update_rule(conn, rule_id, values, now)


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    """Add the alert API and the warnings pages to `app`."""

    def read(work: Callable[[Connection], T]) -> T:
        with engine.connect() as conn:
            return work(conn)

    # --- alerts -------------------------------------------------------------------------------

    @app.get("/api/v1/alerts")
    def api_alerts(
        status: str | None = None,
        after_id: int = Query(0, ge=0),
        event_id: int | None = None,
        limit: int = Query(50, ge=1, le=500),
    ) -> dict[str, Any]:
        """Newest alerts, or those raised after `after_id` (for live updates), with counts."""
        if status and status not in STATUSES:
            raise HTTPException(422, f"status is {' or '.join(STATUSES)} (or empty for all).")

        def work(conn: Connection) -> dict[str, Any]:
            rows = list_alerts(
                conn, status=status or None, after_id=after_id, event_id=event_id, limit=limit
            )
            latest = conn.execute(select(func.max(Alert.id))).scalar() or 0
            return {"alerts": rows, "counts": counts(conn), "latest_id": latest}

        return read(work)

    @app.get("/api/v1/alerts/{alert_id}")
    def api_alert(alert_id: int) -> dict[str, Any]:
        detail = read(lambda conn: alert_detail(conn, alert_id))
        if detail is None:
            raise HTTPException(404, f"No alert {alert_id}.")
        return detail

    @app.post("/api/v1/alerts/{alert_id}/ack")
    def api_alert_ack(request: Request, alert_id: int, body: AckIn) -> dict[str, Any]:
        """Acknowledge (确认收到) as the signed-in person; acknowledging again changes nothing
        and says who did."""
        me = require_user(request)
        try:
            with write_transaction(engine) as conn:
                if not _exists(conn, Alert, alert_id):
                    raise HTTPException(404, f"No alert {alert_id}.")
                done = acknowledge(
                    conn, alert_id, by=me.display_name, via=body.via, now=_now(), user_id=me.id
                )
        except AckError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {
            "acknowledged": True,
            "already": done.already,
            "by": done.by,
            "at": done.at.isoformat() if done.at else None,
        }

    # --- the in-app inbox ---------------------------------------------------------------------

    def _person(conn: Connection, user_id: int) -> None:
        try:
            get_user(conn, user_id)
        except OfficeError as exc:
            raise HTTPException(404, str(exc)) from exc

    def _whose(request: Request, user_id: int | None) -> int:
        """One's own inbox; another person's only for the administrator (helping them)."""
        me = require_user(request)
        if user_id is None or user_id == me.id:
            return me.id
        if me.role != "admin":
            raise HTTPException(403, "Only your own inbox.")
        return user_id

    @app.get("/api/v1/inbox")
    def api_inbox(
        request: Request,
        user_id: int | None = None,
        after_id: int = Query(0, ge=0),
        unread_only: bool = False,
        limit: int = Query(50, ge=1, le=500),
    ) -> dict[str, Any]:
        """Your in-app messages, newest first, and how many are unread."""
        user_id = _whose(request, user_id)

        def work(conn: Connection) -> dict[str, Any]:
            _person(conn, user_id)
            messages = inbox(conn, user_id, after_id=after_id, unread_only=unread_only, limit=limit)
            return {"messages": messages, "unread": unread_count(conn, user_id)}

        return read(work)

    @app.post("/api/v1/inbox/read")
    def api_inbox_read(request: Request, body: ReadIn) -> dict[str, Any]:
        """Mark messages read (`ids`), or all of your messages (`ids`: null)."""
        user_id = _whose(request, body.user_id)
        with write_transaction(engine) as conn:
            _person(conn, user_id)
            marked = mark_read(conn, user_id, body.ids, _now())
            return {"marked": marked, "unread": unread_count(conn, user_id)}

    # --- rules --------------------------------------------------------------------------------

    def rule_write(work: Callable[[Connection], T], rule_id: int | None = None) -> T:
        try:
            with write_transaction(engine) as conn:
                if rule_id is not None and not _exists(conn, AlertRule, rule_id):
                    raise HTTPException(404, f"No alert rule {rule_id}.")
                return work(conn)
        except RuleError as exc:
            raise HTTPException(422, str(exc)) from exc

    @app.get("/api/v1/alert-rules")
    def api_rules() -> dict[str, Any]:
        return read(lambda conn: {"rules": list_rules(conn)})

    @app.post("/api/v1/alert-rules", status_code=201)
    def api_rule_create(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """A new rule: name, conditions, per, recipients, channel_ids, level, limits."""
        return rule_write(lambda conn: create_rule(conn, body, _now()))

    @app.get("/api/v1/alert-rules/{rule_id}")
    def api_rule(rule_id: int) -> dict[str, Any]:
        try:
            return read(lambda conn: get_rule(conn, rule_id))
        except RuleError as exc:
            raise HTTPException(404, str(exc)) from exc

    @app.patch("/api/v1/alert-rules/{rule_id}")
    def api_rule_update(rule_id: int, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return rule_write(lambda conn: rename_safe_update(conn, rule_id, body, _now()), rule_id)

    @app.delete("/api/v1/alert-rules/{rule_id}")
    def api_rule_delete(rule_id: int) -> dict[str, Any]:
        rule_write(lambda conn: delete_rule(conn, rule_id), rule_id)
        return {"deleted": rule_id}

    # --- channels -----------------------------------------------------------------------------

    @app.get("/api/v1/channels")
    def api_channels() -> dict[str, Any]:
        return read(lambda conn: {"channels": list_channels(conn)})

    @app.post("/api/v1/channels", status_code=201)
    def api_channel_create(body: ChannelIn) -> dict[str, Any]:
        """A channel: e-mail, a signed webhook or an apprise URL (docs/alerts-channels.md)."""
        try:
            with write_transaction(engine) as conn:
                return create_channel(
                    conn,
                    settings,
                    name=body.name,
                    kind=body.kind,
                    target=body.target,
                    config=body.config,
                )
        except ChannelError as exc:
            raise HTTPException(422, exc.message) from exc

    def _channel_row(conn: Connection, channel_id: int) -> Any:
        if not _exists(conn, Channel, channel_id):
            raise HTTPException(404, f"No channel {channel_id}.")
        return find_channel(conn, channel_id)

    @app.delete("/api/v1/channels/{channel_id}")
    def api_channel_delete(channel_id: int) -> dict[str, Any]:
        with write_transaction(engine) as conn:
            _channel_row(conn, channel_id)
            remove_channel(conn, channel_id)
        return {"deleted": channel_id}

    @app.post("/api/v1/channels/{channel_id}/test")
    def api_channel_test(channel_id: int, body: ChannelTestIn | None = None) -> dict[str, Any]:
        """Send a test message now (not through the outbox): 502 with the reason if it fails."""
        spec = ChannelSpec.of(read(lambda conn: _channel_row(conn, channel_id)))
        base = (settings.public_url or f"http://{settings.web_host}:{settings.web_port}").rstrip(
            "/"
        )
        zh = settings.alert_language == "zh"
        message = render(
            # A fresh key per test: receivers that drop repeats by key still show each test.
            key=f"test:{channel_id}:{uuid.uuid4().hex}",
            purpose="test",
            level=str(Level.general),
            title=f"听风渠道测试：{spec.name}" if zh else f"Tingfeng channel test: {spec.name}",
            excerpt=(
                "收到这条消息，说明预警可以经此渠道送达。"
                if zh
                else "If you read this, alerts reach you through this channel."
            ),
            url=f"{base}/alerts",
            ack_url=None,
            lang=settings.alert_language,
        )
        try:
            send(spec, message, settings, address=body.address if body else None)
        except ChannelError as exc:
            raise HTTPException(502, exc.message) from exc
        return {"ok": True}

    # --- escalation ---------------------------------------------------------------------------

    @app.get("/api/v1/escalation")
    def api_escalation() -> dict[str, Any]:
        """The escalation policy (逐级上报) of each level that has one, lowest level first."""
        policies = read(load_policies)
        return {"policies": [policies[lv.value].to_dict() for lv in Level if lv.value in policies]}

    @app.put("/api/v1/escalation/{level}")
    def api_escalation_set(level: str, body: PolicyIn) -> dict[str, Any]:
        try:
            with write_transaction(engine) as conn:
                policy = set_policy(
                    conn,
                    level,
                    body.steps,
                    repeat_minutes=body.repeat_minutes,
                    max_repeats=body.max_repeats,
                    now=_now(),
                )
        except EscalationError as exc:
            raise HTTPException(422, str(exc)) from exc
        return policy.to_dict()

    # --- deliveries ---------------------------------------------------------------------------

    @app.get("/api/v1/deliveries/failed")
    def api_failed() -> dict[str, Any]:
        """Messages the outbox gave up on (a channel refused them, or was down too long)."""
        return read(lambda conn: {"deliveries": failed_deliveries(conn), "counts": counts(conn)})

    @app.post("/api/v1/deliveries/retry")
    def api_retry(body: RetryIn) -> dict[str, Any]:
        """Send failed deliveries again (`ids`, or all of them when null)."""
        with write_transaction(engine) as conn:
            retried = outbox.retry(conn, body.ids, _now())
        if retried:
            outbox.notify()  # a dispatcher in this process sends them at once
        return {"retried": retried}

    from tingfeng.web.alert_pages import register as register_pages
    from tingfeng.web.alert_settings import register as register_settings

    register_pages(app, engine, templates, settings)
    register_settings(app, engine, templates, settings)
