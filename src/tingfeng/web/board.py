"""The public message board (留言板): its public pages, and the office's view and API.

Served only when `board_enabled` is on; otherwise none of these routes exists (404), except the
office's page, which then says how to turn the board on. The public pages carry no office
navigation and speak the asker's language (Chinese, or English by the switch); the follow
link's token is its own authorisation. The office's page and API need a signed-in person of the
roles in `tingfeng.web.guard`; the office's page is in `tingfeng.web.board_office`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from tingfeng.cases.board import (
    KINDS,
    STATUS,
    BoardError,
    ChallengeResult,
    MessageNotFound,
    RateLimiter,
    UsedTokens,
    check_challenge,
    count_by_status,
    count_public,
    find_by_token,
    list_messages,
    make_challenge,
    public_messages,
    set_status,
    stats,
    submit_message,
    validate_message,
)
from tingfeng.db.engine import write_transaction
from tingfeng.secret import secret_key
from tingfeng.settings import Settings
from tingfeng.web import local_formatter
from tingfeng.web.guard import require_user
from tingfeng.web.i18n import N_, gettext

T = TypeVar("T")
PER_PAGE = 20
# A message is at most 5,000 characters; a form far larger than that is not a person's.
MAX_FORM_BYTES = 256 * 1024
FORM_FIELDS = ("kind", "title", "body", "name", "contact")

CHALLENGE_ZH: dict[ChallengeResult, str] = {
    "ok": "",
    "wrong": N_("验证题答案不正确，请回答下面的新验证题。"),
    "expired": N_("验证题已过期（超过 30 分钟），请回答下面的新验证题。"),
    "reused": N_("这道验证题已经用过，请回答下面的新验证题。"),
    "invalid": N_("验证信息无效，请回答下面的新验证题。"),
}
# The default title of the board (settings.board_title), so an English page can translate it;
# a title of the office's own choosing is shown as it is.
N_("网上留言板")
# The follow link is the asker's key: keep it out of caches, referrers and search engines.
PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}


class StatusIn(BaseModel):
    status: str = Field(examples=["spam", "closed"])
    reason: str = Field("", max_length=2000)
    by: str | None = Field(None, max_length=200)


def _now() -> datetime:
    return datetime.now(UTC)


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    """Add the board's pages and API to `app` when the board is enabled."""
    from tingfeng.web.board_office import register_office

    register_office(app, engine, templates, settings)
    if not settings.board_enabled:
        return
    tz = ZoneInfo(settings.default_timezone)
    limiter = RateLimiter(settings.board_per_hour)
    used = UsedTokens()

    local = local_formatter(settings.default_timezone)

    def read(work: Callable[[Any], T]) -> T:
        with engine.connect() as conn:
            return work(conn)

    def board_context(page: int) -> dict[str, Any]:
        def work(conn: Any) -> dict[str, Any]:
            rows = public_messages(conn, limit=PER_PAGE + 1, offset=(page - 1) * PER_PAGE)
            return {
                "messages": rows[:PER_PAGE],
                "has_next": len(rows) > PER_PAGE,
                "total_public": count_public(conn),
                "stats": stats(conn, _now(), tz=settings.default_timezone),
            }

        return read(work)

    def board_page(
        request: Request,
        *,
        page: int = 1,
        status_code: int = 200,
        form: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        error: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        context = board_context(page) | {
            "board_title": settings.board_title,
            "page": page,
            "form": form or {"kind": "question"},
            "errors": errors or {},
            "error": error,
            "challenge": make_challenge(secret_key(settings), _now()),
            "kinds": KINDS,
            "per_hour": settings.board_per_hour,
            "local": local,
        }
        return templates.TemplateResponse(
            request,
            "board.html",
            context,
            status_code=status_code,
            # A cached page would offer a spent challenge.
            headers={"Cache-Control": "no-store"} | (headers or {}),
        )

    def follow_page(request: Request, status_code: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            "board_follow.html",
            {
                "board_title": settings.board_title,
                "m": None,
                "created": False,
                "follow_url": None,
                "local": local,
            }
            | context,
            status_code=status_code,
            headers=PRIVATE_HEADERS,
        )

    def base_url(request: Request) -> str:
        return (settings.public_url or str(request.base_url)).rstrip("/")

    # --- public pages ---------------------------------------------------------------------------

    @app.get("/board", response_class=HTMLResponse)
    def board(request: Request, page: int = Query(1, ge=1, le=10_000)) -> HTMLResponse:
        """The board: the notice on data use, the form, the statistics, answered messages."""
        return board_page(request, page=page)

    @app.post("/board", response_class=HTMLResponse)
    async def board_submit(request: Request) -> HTMLResponse:
        """Leave a message: honeypot, rate limit, validation and challenge, then store it."""
        length = request.headers.get("content-length") or "0"
        if not length.isdigit() or int(length) > MAX_FORM_BYTES:
            return await run_in_threadpool(
                lambda: board_page(
                    request, status_code=413, error=gettext("提交的内容过长，请精简后再试。")
                )
            )
        data = await request.form()
        form = {k: str(data.get(k) or "") for k in FORM_FIELDS}
        form["private"] = "1" if data.get("private") else ""
        addr = request.client.host if request.client else "unknown"
        now = _now()

        def refuse(status_code: int, error: str | None = None, **kw: Any) -> HTMLResponse:
            return board_page(request, status_code=status_code, form=form, error=error, **kw)

        def work() -> HTMLResponse:
            if str(data.get("website") or "").strip():
                # People never see this field; whatever fills it is most likely a robot.
                return refuse(400, gettext("提交未被接受：请不要填写“网址”一栏，然后重新提交。"))
            until = limiter.retry_after(addr, now)
            if until is not None:
                return refuse(
                    429,
                    gettext(
                        "提交过于频繁：同一网络地址每小时最多留言 %(n)s 条。请于 %(at)s 之后再试。"
                    )
                    % {"n": settings.board_per_hour, "at": f"{until.astimezone(tz):%H:%M}"},
                    headers={"Retry-After": str(max(1, int((until - now).total_seconds())))},
                )
            errors: dict[str, str] = {}
            try:
                validate_message(
                    kind=form["kind"],
                    title=form["title"],
                    body=form["body"],
                    name=form["name"],
                    contact=form["contact"],
                )
            except BoardError as exc:
                errors = dict(exc.fields)
            result = check_challenge(
                secret_key(settings),
                str(data.get("challenge") or ""),
                str(data.get("answer") or ""),
                now,
                used=used,
            )
            if result != "ok":
                errors["answer"] = gettext(CHALLENGE_ZH[result])
            if errors:
                status = 422 if set(errors) - {"answer"} else 400
                return refuse(status, gettext("留言未提交，请按提示修改。"), errors=errors)
            if not limiter.allow(addr, now):  # another request from the address came first
                return refuse(429, gettext("提交过于频繁，请稍后再试。"))
            with write_transaction(engine) as conn:
                _, token = submit_message(
                    conn,
                    kind=form["kind"],
                    title=form["title"],
                    body=form["body"],
                    name=form["name"],
                    contact=form["contact"],
                    public=not form["private"],
                    now=now,
                )
                message = find_by_token(conn, token)
            return follow_page(
                request,
                201,
                m=message,
                created=True,
                follow_url=f"{base_url(request)}/board/m/{token}",
            )

        return await run_in_threadpool(work)

    @app.get("/board/m/{token}", response_class=HTMLResponse)
    def board_follow(request: Request, token: str) -> HTMLResponse:
        """The asker's private view of their message: its status, and the answer when there."""
        message = read(lambda conn: find_by_token(conn, token))
        if message is None:
            return follow_page(request, 404)
        return follow_page(request, m=message)

    # --- the office's API -----------------------------------------------------------------------

    @app.get("/api/v1/board/messages")
    def api_board_messages(
        status: str | None = None,
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        """Messages for the office, newest first, with contact details; `status` narrows."""
        if status is not None and status not in STATUS:
            raise HTTPException(422, f"Unknown status {status!r}: use one of {', '.join(STATUS)}.")
        return read(
            lambda conn: {
                "messages": list_messages(conn, status, limit=limit, offset=offset),
                "counts": count_by_status(conn),
            }
        )

    @app.post("/api/v1/board/messages/{message_id}/status")
    def api_board_status(request: Request, message_id: int, body: StatusIn) -> dict[str, Any]:
        """Mark a message spam, or closed (no answer needed), or back to new."""
        actor = require_user(request)
        try:
            with write_transaction(engine) as conn:
                return set_status(conn, message_id, body.status, actor, body.reason)
        except MessageNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except BoardError as exc:
            raise HTTPException(422, str(exc)) from exc
