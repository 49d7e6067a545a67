"""The warnings settings pages: alert rules (预警规则), channels (通知渠道) with "send test",
escalation policies (逐级上报) and failed deliveries.

The forms post to these pages, which read them (tingfeng.web.alert_forms), save through the
same services as the API and show each problem next to its field, keeping what was typed
(except secrets, which are never printed back). "Send test" and "retry" are the page's script
calling the API. Who may change what is tingfeng.web.guard's: the pages only hide the controls
a role may not use.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection, select
from starlette.concurrency import run_in_threadpool

from tingfeng.alerts.channels import ChannelError
from tingfeng.alerts.escalation import EscalationError, load_policies, set_policy
from tingfeng.alerts.rules import EMOTIONS, POLARITIES, RuleError
from tingfeng.alerts.service import (
    create_channel,
    create_rule,
    delete_rule,
    failed_deliveries,
    get_rule,
    list_channels,
    list_rules,
    remove_channel,
    update_rule,
)
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import Channel, Department, Source, Topic, User
from tingfeng.settings import Settings
from tingfeng.web.alert_forms import (
    MAX_STEPS,
    Parsed,
    channel_from_form,
    policy_from_form,
    rule_error_field,
    rule_from_form,
)
from tingfeng.web.alert_pages import common, may
from tingfeng.web.alert_text import (
    CHANNEL_KIND_ZH,
    DUTY_ROLE_ZH,
    PER_ZH,
    ROLE_ZH,
    TIER_ZH,
    TRIGGER_ZH,
    Names,
    category_names,
    channel_view,
    conditions_text,
    error_hints,
    recipients_text,
    region_name,
    sending_text,
    step_text,
    trigger_of,
)
from tingfeng.web.alerts import rename_safe_update
from tingfeng.web.i18n import N_, gettext
from tingfeng.web.labels import EMOTION_ZH, LEVEL_ZH, POLARITY_ZH

T = TypeVar("T")

NEW_RULE: dict[str, Any] = {
    "id": None,
    "name": "",
    "enabled": True,
    "conditions": {},
    "per": "event",
    "recipients": {},
    "channel_ids": [],
    "level": "general",
    "dedup_window_s": 86400,
    "rate_limit_per_hour": 30,
    "digest_minutes": 0,
    "escalate": True,
    "note": None,
}
RULE_NOTICES = {
    "saved": N_("规则已保存。"),
    "enabled": N_("规则已启用。"),
    "disabled": N_("规则已停用。"),
    "deleted": N_("规则已删除（它产生的预警仍然保留）。"),
}
CHANNEL_NOTICES = {
    "added": N_("渠道已添加。建议马上“发送测试”，确认消息能送达。"),
    "deleted": N_("渠道已删除（规则中的其他渠道不受影响）。"),
    "policy": N_("逐级上报设置已保存。"),
}


def _options(conn: Connection) -> dict[str, Any]:
    """The choices of the rule and escalation forms."""

    def pairs(*cols: Any) -> list[tuple[Any, str]]:
        return [(k, str(v)) for k, v in conn.execute(select(*cols).order_by(cols[0])).all()]

    return {
        "topics": pairs(Topic.id, Topic.name),
        "sources": pairs(Source.id, Source.name),
        "users": [
            (r.id, f"{r.display_name} ({r.username})")
            for r in conn.execute(
                select(User.id, User.display_name, User.username).order_by(User.id)
            ).all()
        ],
        "departments": pairs(Department.id, Department.name),
        "channel_choices": pairs(Channel.id, Channel.name),
        "categories": list(category_names(conn).items()),
        "polarities": [(p, POLARITY_ZH[p]) for p in POLARITIES],
        "emotions": [(e, EMOTION_ZH[e]) for e in EMOTIONS],
        "tiers": list(TIER_ZH.items()),
        "levels": list(LEVEL_ZH.items()),
        "roles": list(ROLE_ZH.items()),
        "duty_roles": list(DUTY_ROLE_ZH.items()),
        "triggers": list(TRIGGER_ZH.items()),
        "pers": list(PER_ZH.items()),
    }


def _rule_row(rule: dict[str, Any], names: Names) -> dict[str, Any]:
    conditions = rule.get("conditions") or {}
    return {
        **rule,
        "trigger": trigger_of(conditions),
        "conditions_text": conditions_text(conditions, names),
        "recipients_text": recipients_text(rule.get("recipients") or {}, names),
        "channels_text": names.of(names.channels, rule.get("channel_ids") or []),
        "sending_text": sending_text(rule),
    }


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    """Add the rules, channels and escalation pages to `app`."""

    def read(work: Callable[[Connection], T]) -> T:
        with engine.connect() as conn:
            return work(conn)

    def now() -> datetime:
        return datetime.now(UTC)

    # --- rules --------------------------------------------------------------------------------

    def rules_context(request: Request) -> dict[str, Any]:
        def work(conn: Connection) -> dict[str, Any]:
            names = Names(conn)
            return {"rules": [_rule_row(r, names) for r in list_rules(conn)]}

        notice = RULE_NOTICES.get(request.query_params.get("notice", ""))
        return {
            **common(request, settings),
            **read(work),
            "notice": gettext(notice) if notice else None,
            "highlight": request.query_params.get("rule", ""),
            "can_edit": may(request, "POST", "/alerts/rules"),
            "trigger_labels": TRIGGER_ZH,
        }

    @app.get("/alerts/rules", response_class=HTMLResponse)
    def rules_page(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "alert_rules.html", rules_context(request))

    def rule_page(
        request: Request, rule: dict[str, Any], errors: dict[str, str] | None = None,
        status_code: int = 200,
    ) -> HTMLResponse:  # fmt: skip
        def work(conn: Connection) -> dict[str, Any]:
            return _options(conn)

        options = read(work)
        chosen = (rule.get("conditions") or {}).get("categories") or []
        known = {slug for slug, _ in options["categories"]}
        # A category the taxonomy no longer has stays visible, so saving does not drop it.
        options["categories"] += [(slug, slug) for slug in chosen if slug not in known]
        regions = (rule.get("conditions") or {}).get("regions") or []
        return templates.TemplateResponse(
            request,
            "alert_rule.html",
            {
                **common(request, settings),
                **options,
                "rule": rule,
                "errors": errors or {},
                "region_names": [region_name(r) for r in regions if str(r).isdigit()],
                "can_edit": may(request, "POST", "/alerts/rules"),
            },
            status_code=status_code,
        )

    @app.get("/alerts/rules/new", response_class=HTMLResponse)
    def rule_new(request: Request) -> HTMLResponse:
        return rule_page(request, dict(NEW_RULE))

    @app.get("/alerts/rules/{rule_id:int}", response_class=HTMLResponse)
    def rule_edit(request: Request, rule_id: int) -> HTMLResponse:
        try:
            rule = read(lambda conn: get_rule(conn, rule_id))
        except RuleError as exc:
            raise HTTPException(404, str(exc)) from exc
        return rule_page(request, rule)

    async def save_rule(request: Request, rule_id: int | None) -> Response:
        parsed = rule_from_form(await request.form())
        rule = {**NEW_RULE, **parsed.values, "id": rule_id}
        if not parsed.ok:
            return await run_in_threadpool(rule_page, request, rule, parsed.errors, 422)

        def work() -> dict[str, Any]:
            with write_transaction(engine) as conn:
                if rule_id is None:
                    return create_rule(conn, parsed.values, now())
                get_rule(conn, rule_id)
                return rename_safe_update(conn, rule_id, parsed.values, now())

        try:
            saved = await run_in_threadpool(work)
        except RuleError as exc:
            message = str(exc)
            if message.startswith("No alert rule"):
                raise HTTPException(404, message) from exc
            errors = {rule_error_field(message): message}
            return await run_in_threadpool(rule_page, request, rule, errors, 422)
        return RedirectResponse(f"/alerts/rules?notice=saved&rule={saved['id']}", 303)

    @app.post("/alerts/rules", response_class=HTMLResponse)
    async def rule_create(request: Request) -> Response:
        return await save_rule(request, None)

    @app.post("/alerts/rules/{rule_id}", response_class=HTMLResponse)
    async def rule_update(request: Request, rule_id: int) -> Response:
        return await save_rule(request, rule_id)

    def rule_change(rule_id: int, work: Callable[[Connection], Any]) -> None:
        try:
            with write_transaction(engine) as conn:
                get_rule(conn, rule_id)
                work(conn)
        except RuleError as exc:
            raise HTTPException(404, str(exc)) from exc

    @app.post("/alerts/rules/{rule_id}/enabled")
    async def rule_enabled(request: Request, rule_id: int) -> Response:
        enabled = str((await request.form()).get("enabled") or "") == "1"
        await run_in_threadpool(
            rule_change,
            rule_id,
            lambda conn: update_rule(conn, rule_id, {"enabled": enabled}, now()),
        )
        notice = "enabled" if enabled else "disabled"
        return RedirectResponse(f"/alerts/rules?notice={notice}&rule={rule_id}", 303)

    @app.post("/alerts/rules/{rule_id}/delete")
    async def rule_delete(rule_id: int) -> Response:
        await run_in_threadpool(rule_change, rule_id, lambda conn: delete_rule(conn, rule_id))
        return RedirectResponse("/alerts/rules?notice=deleted", 303)

    # --- channels and escalation --------------------------------------------------------------

    def policies_view(
        conn: Connection, names: Names, failed: tuple[str, Parsed] | None
    ) -> list[dict[str, Any]]:
        saved = load_policies(conn)
        out = []
        for level, level_zh in LEVEL_ZH.items():
            policy = saved[level].to_dict() if level in saved else None
            steps = policy["steps"] if policy else []
            view = {
                "level": level,
                "label": level_zh,
                "texts": [step_text(s, names) for s in steps],
                "repeat_minutes": policy["repeat_minutes"] if policy else 0,
                "max_repeats": policy["max_repeats"] if policy else 0,
                "steps": steps,
                "errors": {},
                "open": False,
            }
            if failed and failed[0] == level:  # the form as it was sent, with its problems
                view.update(failed[1].values, errors=failed[1].errors, open=True)
            blank = {"after_minutes": "", "recipients": {}, "channel_ids": []}
            view["rows"] = (view["steps"] + [blank])[:MAX_STEPS]
            out.append(view)
        return out

    def channels_page(
        request: Request,
        *,
        form: dict[str, Any] | None = None,
        errors: dict[str, str] | None = None,
        policy_failed: tuple[str, Parsed] | None = None,
        status_code: int = 200,
    ) -> HTMLResponse:
        base = common(request, settings)

        def work(conn: Connection) -> dict[str, Any]:
            names = Names(conn)
            return {
                "channels": [channel_view(c) for c in list_channels(conn)],
                "policies": policies_view(conn, names, policy_failed),
                "failed": failed_deliveries(conn) if base["can_read_failed"] else [],
                **_options(conn),
            }

        notice = CHANNEL_NOTICES.get(request.query_params.get("notice", ""))
        me = request.state.user
        return templates.TemplateResponse(
            request,
            "channels.html",
            {
                **base,
                **read(work),
                "form": form or {"kind": "webhook"},
                "errors": errors or {},
                "kinds": CHANNEL_KIND_ZH,
                "notice": gettext(notice) if notice else None,
                "highlight": request.query_params.get("channel", ""),
                "smtp": {
                    "host": settings.smtp_host,
                    "port": settings.smtp_port,
                    "security": settings.smtp_security,
                    "sender": settings.smtp_from,
                },
                "my_email": (me.email or "") if me else "",
                "error_hints": error_hints(),
                "can_manage": may(request, "POST", "/alerts/channels"),
                "can_test": may(request, "POST", "/api/v1/channels/{channel_id}/test"),
                "can_edit_policy": may(request, "POST", "/alerts/escalation/{level}"),
            },
            status_code=status_code,
        )

    async def render_channels(request: Request, **refused: Any) -> HTMLResponse:
        """The page again after a refused form (422), rendered off the event loop."""
        return await run_in_threadpool(lambda: channels_page(request, status_code=422, **refused))

    @app.get("/alerts/channels", response_class=HTMLResponse)
    def channels(request: Request) -> HTMLResponse:
        return channels_page(request)

    @app.post("/alerts/channels", response_class=HTMLResponse)
    async def channel_add(request: Request) -> Response:
        form = await request.form()
        parsed = channel_from_form(form)
        # What was typed comes back on a refusal, except the secrets (never printed back).
        kept = {k: str(form.get(k) or "") for k in ("name", "kind", "mailbox", "url", "chat_id",
                                                    "endpoint")}  # fmt: skip
        if not parsed.ok:
            return await render_channels(request, form=kept, errors=parsed.errors)

        def work() -> dict[str, Any]:
            with write_transaction(engine) as conn:
                return create_channel(conn, settings, **parsed.values)

        try:
            channel = await run_in_threadpool(work)
        except ChannelError as exc:
            return await render_channels(request, form=kept, errors={"form": exc.message})
        return RedirectResponse(f"/alerts/channels?notice=added&channel={channel['id']}", 303)

    @app.post("/alerts/channels/{channel_id}/delete")
    async def channel_delete(channel_id: int) -> Response:
        def work() -> None:
            with write_transaction(engine) as conn:
                if conn.execute(select(Channel.id).where(Channel.id == channel_id)).first() is None:
                    raise HTTPException(404, f"No channel {channel_id}.")
                remove_channel(conn, channel_id)

        await run_in_threadpool(work)
        return RedirectResponse("/alerts/channels?notice=deleted", 303)

    @app.post("/alerts/escalation/{level}", response_class=HTMLResponse)
    async def escalation_set(request: Request, level: str) -> Response:
        if level not in LEVEL_ZH:
            raise HTTPException(404, f"No level {level!r}: general, serious, major or critical.")
        parsed = policy_from_form(await request.form())
        if not parsed.ok:
            return await render_channels(request, policy_failed=(level, parsed))

        def work() -> None:
            with write_transaction(engine) as conn:
                set_policy(conn, level, parsed.values["steps"], now=now(),
                           repeat_minutes=parsed.values["repeat_minutes"],
                           max_repeats=parsed.values["max_repeats"])  # fmt: skip

        try:
            await run_in_threadpool(work)
        except EscalationError as exc:
            parsed.errors["form"] = str(exc)
            return await render_channels(request, policy_failed=(level, parsed))
        return RedirectResponse(f"/alerts/channels?notice=policy#escalation-{level}", 303)
