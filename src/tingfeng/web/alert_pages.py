"""The warnings pages (预警): the live list, one alert, and the acknowledge link's page.

The list and the alert's page read the same services as the API (tingfeng.alerts.service); their
scripts acknowledge and retry through the API. The acknowledge link (`/alerts/ack/{token}`) is
public: its signed token is the credential, and only its POST acknowledges (mail scanners and
chat previews open links).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection, func, select

from tingfeng.alerts.ack import AckError, acknowledge, read_token
from tingfeng.alerts.service import alert_detail, counts, failed_deliveries, list_alerts
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import Alert
from tingfeng.office.people import OfficeError, get_user
from tingfeng.secret import secret_key
from tingfeng.settings import Settings
from tingfeng.web import local_formatter
from tingfeng.web.alert_text import (
    DELIVERY_ZH,
    LOG_ZH,
    PURPOSE_ZH,
    STATUS_ZH,
    VIA_ZH,
    label,
    level_label,
    log_detail,
    plain_error,
    readable_reason,
)
from tingfeng.web.guard import roles_for
from tingfeng.web.i18n import gettext
from tingfeng.web.labels import LEVEL_ZH

T = TypeVar("T")


def may(request: Request, method: str, path: str) -> bool:
    """Whether the signed-in person's role may call this route (tingfeng.web.guard's tables)."""
    user = getattr(request.state, "user", None)
    return user is not None and user.role in roles_for(method, path)


def common(request: Request, settings: Settings) -> dict[str, Any]:
    """What every warnings page's template uses."""
    return {
        "local": local_formatter(settings.default_timezone),
        "label": label,
        "level_label": level_label,
        "level_labels": LEVEL_ZH,
        "status_labels": STATUS_ZH,
        "plain_error": plain_error,
        "can_read_failed": may(request, "GET", "/api/v1/deliveries/failed"),
        "can_retry": may(request, "POST", "/api/v1/deliveries/retry"),
    }


class _AckPageError(Exception):
    """Shown on the acknowledge page, already in the request's language, with its status."""

    def __init__(self, status: int, message: str, alert: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.alert = status, message, alert


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    """Add the alert list, the alert's page and the acknowledge link's page to `app`."""
    local = local_formatter(settings.default_timezone)

    def read(work: Callable[[Connection], T]) -> T:
        with engine.connect() as conn:
            return work(conn)

    @app.get("/alerts", response_class=HTMLResponse)
    def alerts_page(request: Request, status: Literal["open", "all"] = "open") -> HTMLResponse:
        base = common(request, settings)

        def work(conn: Connection) -> dict[str, Any]:
            return {
                "alerts": list_alerts(conn, status="open" if status == "open" else None, limit=100),
                "counts": counts(conn),
                "failed": failed_deliveries(conn) if base["can_read_failed"] else [],
                "latest_id": conn.execute(select(func.max(Alert.id))).scalar() or 0,
            }

        return templates.TemplateResponse(
            request,
            "alerts.html",
            {**base, **read(work), "status": status, "timezone": settings.default_timezone},
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
                **common(request, settings),
                **context,
                "delivery_labels": DELIVERY_ZH,
                "log_labels": LOG_ZH,
                "via_labels": VIA_ZH,
                "purpose_labels": PURPOSE_ZH,
                "log_detail": log_detail,
                "can_ack": may(request, "POST", "/api/v1/alerts/{alert_id}/ack"),
                "can_open_case": may(request, "POST", "/cases/open"),
            },
        )

    # --- the acknowledge link -----------------------------------------------------------------

    def ack_page(request: Request, status_code: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            "ack.html",
            {"error": None, "done": None, "a": None, "name": "", "local": local,
             "level_label": level_label} | context,
            status_code=status_code,
        )  # fmt: skip

    def token_of(token: str) -> Any:
        try:
            return read_token(secret_key(settings), token)
        except AckError as exc:
            incomplete = "incomplete" in str(exc)
            raise _AckPageError(
                400,
                gettext("确认链接不完整：请打开消息中的完整链接。")
                if incomplete
                else gettext("确认链接无效：链接被改动过，或来自另一套听风系统。"),
            ) from exc

    def ack_context(conn: Connection, token: str) -> tuple[Any, dict[str, Any], str]:
        parsed = token_of(token)
        detail = alert_detail(conn, parsed.alert_id)
        if detail is None:
            raise _AckPageError(
                404, gettext("预警 %(id)s 不存在（可能已被删除）。") % {"id": parsed.alert_id}
            )
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
            now = datetime.now(UTC)
            with write_transaction(engine) as conn:
                parsed, detail, name = ack_context(conn, token)
                if detail["status"] == "acknowledged":
                    done = acknowledge(conn, parsed.alert_id, by="", via="link", now=now)
                    return detail, done, name
                if not (by or name):
                    raise _AckPageError(422, gettext("请填写确认人姓名。"), detail)
                done = acknowledge(
                    conn, parsed.alert_id, by=by or name, via="link", now=now,
                    user_id=parsed.user_id,
                )  # fmt: skip
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
