"""API and pages for alerts (预警): the list, acknowledging, the in-app inbox, rules, channels,
escalation policies and failed deliveries.

Sign-in arrives with issue 7; until then who acts ("by", "user_id") comes in the request. The
acknowledge link's token is its own authorisation: it is signed with the installation's secret
and names the alert (and the person the message went to).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy import Connection, func, select

from tingfeng.alerts import outbox
from tingfeng.alerts.ack import AckError, acknowledge, read_token
from tingfeng.alerts.channels import ChannelError, ChannelSpec, send
from tingfeng.alerts.escalation import EscalationError, load_policies, set_policy
from tingfeng.alerts.messages import PURPOSE_ZH, render
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
from tingfeng.db.models import Alert, AlertRule, Channel, Topic
from tingfeng.events.grading import Level
from tingfeng.office.people import OfficeError, get_user
from tingfeng.secret import secret_key
from tingfeng.settings import Settings
from tingfeng.web import local_formatter
from tingfeng.web.guard import require_user

T = TypeVar("T")

STATUSES = ("open", "acknowledged")
STATUS_ZH = {"open": "待确认", "acknowledged": "已确认"}
DELIVERY_ZH = {
    "pending": "待发送",
    "sending": "发送中",
    "sent": "已发送",
    "failed": "发送失败",
    "cancelled": "已取消",
}
LOG_ZH = {
    "raised": "触发预警",
    "escalated": "逐级上报",
    "acknowledged": "确认收到",
    "level_up": "等级上升",
}
VIA_ZH = {"web": "网页", "api": "接口", "link": "消息中的确认链接", "cli": "命令行"}
MATCHED_ZH = {
    "topics": "命中方案",
    "query": "检索条件",
    "source": "信源",
    "tier": "媒体级别",
    "polarity": "倾向",
    "emotion": "情绪",
    "categories": "类别",
    "regions": "地域",
    "needs_verification": "待核实",
    "new_event": "新事件",
    "level": "事件等级",
    "previous_level": "原等级",
    "event_posts": "事件信息量",
    "spike": "突增对象",
    "hour": "突增时段",
    "count": "该时段条数",
    "expected": "预期条数",
    "ratio": "倍数",
}
HELD_ZH = {"digest": "汇总模式：随下一次汇总发送", "rate_limited": "超过频率上限：随汇总发送"}
VALUE_ZH = {
    "negative": "负面",
    "neutral": "中性",
    "positive": "正面",
    "angry": "愤怒",
    "happy": "喜悦",
    "sad": "悲伤",
    "fear": "恐惧",
    "surprise": "惊奇",
    True: "是",
    False: "否",
}


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


def readable_reason(conn: Connection, reason: dict[str, Any]) -> list[tuple[str, str]]:
    """Why an alert fired, as (label, value) lines in Chinese (for the detail page)."""
    lines: list[tuple[str, str]] = []
    if reason.get("rule"):
        rule_id = reason.get("rule_id")
        lines.append(("规则", f"{reason['rule']}" + (f"（编号 {rule_id}）" if rule_id else "")))
    matched = reason.get("matched") or {}
    topics: dict[int, str] = {}
    if matched.get("topics"):
        ids = [int(t) for t in matched["topics"]]
        topics = dict(conn.execute(select(Topic.id, Topic.name).where(Topic.id.in_(ids))).all())
    for key, value in matched.items():
        label = MATCHED_ZH.get(key, key)
        if key == "topics":
            text = "、".join(f"{topics.get(int(t), '已删除的方案')}（{t}）" for t in value)
        elif key == "regions":
            text = "、".join(_region_name(code) for code in value)
        elif key in ("level", "previous_level") and value in Level.__members__:
            text = Level(value).label_zh
        elif key == "new_event":
            text = f"事件 {value}"
        elif isinstance(value, list):
            text = "、".join(str(VALUE_ZH.get(v, v)) for v in value)
        elif isinstance(value, bool | str):
            text = str(VALUE_ZH.get(value, value))
        else:
            text = str(value)
        lines.append((label, text))
    if reason.get("held"):
        lines.append(("发送方式", HELD_ZH.get(reason["held"], reason["held"])))
    for key, value in reason.items():  # anything else (a duty alert's shift and date)
        if key not in ("rule", "rule_id", "matched", "held"):
            lines.append((key, str(value)))
    return lines


def _region_name(code: str) -> str:
    from tingfeng.analyze.regions import default_table

    division = default_table().get(str(code))
    return "".join(division.path) if division else str(code)


def _log_detail(entry: dict[str, Any]) -> str:
    detail = entry.get("detail") or {}
    parts = []
    if entry["what"] == "acknowledged" and detail.get("via"):
        parts.append("方式：" + VIA_ZH.get(detail["via"], detail["via"]))
        if detail.get("escalations_cancelled"):
            parts.append(f"取消待发的上报消息 {detail['escalations_cancelled']} 条")
    elif entry["what"] == "escalated":
        parts.append(f"第 {detail.get('step')} 步")
    elif entry["what"] == "level_up":
        before, after = detail.get("previous"), detail.get("level")
        if before in Level.__members__ and after in Level.__members__:
            parts.append(f"由{Level(before).zh}升为{Level(after).zh}")
        if detail.get("reopened"):
            parts.append("已确认的预警重新打开")
    elif entry["what"] == "raised" and detail.get("held"):
        parts.append(HELD_ZH.get(detail["held"], detail["held"]))
    return "；".join(parts)


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    """Add the alert routes to `app`."""
    local = local_formatter(settings.default_timezone)

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
        return rule_write(lambda conn: update_rule(conn, rule_id, body, _now()), rule_id)

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

    # --- pages --------------------------------------------------------------------------------

    @app.get("/alerts", response_class=HTMLResponse)
    def alerts_page(request: Request, status: Literal["open", "all"] = "open") -> HTMLResponse:
        def work(conn: Connection) -> dict[str, Any]:
            return {
                "alerts": list_alerts(conn, status="open" if status == "open" else None, limit=100),
                "counts": counts(conn),
                "failed": failed_deliveries(conn),
                "latest_id": conn.execute(select(func.max(Alert.id))).scalar() or 0,
            }

        context = read(work)
        return templates.TemplateResponse(
            request,
            "alerts.html",
            {
                **context,
                "status": status,
                "status_zh": STATUS_ZH,
                "local": local,
                "timezone": settings.default_timezone,
            },
        )

    @app.get("/alerts/{alert_id:int}", response_class=HTMLResponse)
    def alert_page(request: Request, alert_id: int) -> HTMLResponse:
        def work(conn: Connection) -> dict[str, Any] | None:
            detail = alert_detail(conn, alert_id)
            if detail is None:
                return None
            return {"a": detail, "reason_lines": readable_reason(conn, detail["reason"] or {})}

        context = read(work)
        if context is None:
            raise HTTPException(404, f"No alert {alert_id}.")
        return templates.TemplateResponse(
            request,
            "alert.html",
            {
                **context,
                "status_zh": STATUS_ZH,
                "delivery_zh": DELIVERY_ZH,
                "log_zh": LOG_ZH,
                "via_zh": VIA_ZH,
                "purpose_zh": PURPOSE_ZH,
                "log_detail": _log_detail,
                "local": local,
            },
        )

    def ack_page(request: Request, status_code: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            "ack.html",
            {"error": None, "done": None, "a": None, "name": "", "local": local} | context,
            status_code=status_code,
        )

    def token_of(token: str) -> Any:
        try:
            return read_token(secret_key(settings), token)
        except AckError as exc:
            incomplete = "incomplete" in str(exc)
            raise _AckPageError(
                400,
                "确认链接不完整：请打开消息中的完整链接。"
                if incomplete
                else "确认链接无效：链接被改动过，或来自另一套听风系统。",
            ) from exc

    def ack_context(conn: Connection, token: str) -> tuple[Any, dict[str, Any], str]:
        parsed = token_of(token)
        detail = alert_detail(conn, parsed.alert_id)
        if detail is None:
            raise _AckPageError(404, f"预警 {parsed.alert_id} 不存在（可能已被删除）。")
        name = ""
        if parsed.user_id is not None:
            try:
                name = get_user(conn, parsed.user_id).display_name
            except OfficeError:
                name = ""  # the person was removed since: the form still works with a name
        return parsed, detail, name

    @app.get("/alerts/ack/{token}", response_class=HTMLResponse)
    def ack_form(request: Request, token: str) -> HTMLResponse:
        """Show the alert and a form; only the POST acknowledges (link scanners open GETs)."""
        try:
            _, detail, name = read(lambda conn: ack_context(conn, token))
        except _AckPageError as exc:
            return ack_page(request, exc.status, error=exc.message)
        return ack_page(request, a=detail, name=name)

    @app.post("/alerts/ack/{token}", response_class=HTMLResponse)
    async def ack_submit(request: Request, token: str) -> HTMLResponse:
        from starlette.concurrency import run_in_threadpool

        form = await request.form()
        by = str(form.get("by") or "").strip()

        def work() -> tuple[dict[str, Any], Any, str]:
            with write_transaction(engine) as conn:
                parsed, detail, name = ack_context(conn, token)
                if detail["status"] == "acknowledged":
                    done = acknowledge(conn, parsed.alert_id, by="", via="link", now=_now())
                    return detail, done, name
                if not (by or name):
                    raise _AckPageError(422, "请填写确认人姓名。", detail)
                done = acknowledge(
                    conn,
                    parsed.alert_id,
                    by=by or name,
                    via="link",
                    now=_now(),
                    user_id=parsed.user_id,
                )
                return alert_detail(conn, parsed.alert_id) or detail, done, name

        try:
            detail, done, name = await run_in_threadpool(work)
        except _AckPageError as exc:
            return ack_page(request, exc.status, error=exc.message, a=exc.alert, name=by)
        return ack_page(
            request,
            a=detail,
            name=name,
            done={
                "by": done.by,
                "at": done.at.isoformat() if done.at else None,
                "already": done.already,
            },
        )


class _AckPageError(Exception):
    """Shown on the acknowledge page (in Chinese) with its status code."""

    def __init__(self, status: int, message: str, alert: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.alert = status, message, alert
