"""The office's view of the public message board (/board/office): messages by status, one
message with its contact details and history, marking it (spam, closed, back to new) with a
reason, opening a case from it (origin 留言板), and the answer published from that case.

Everything a message says came from the public: the page prints it escaped. Answers are not
written here: the case's approved reply, once its publication is recorded, is the answer
(`tingfeng.cases.replies.publish_reply` → `tingfeng.cases.board.publish_answer`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection, select

from tingfeng import audit
from tingfeng.cases.board import (
    KINDS,
    OFFICE_STATUSES,
    STATUS,
    BoardError,
    MessageNotFound,
    count_by_status,
    get_message,
    list_messages,
    set_status,
)
from tingfeng.cases.replies import list_replies
from tingfeng.cases.service import get_case
from tingfeng.cases.states import STATES
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import Case
from tingfeng.problems import ProblemsError
from tingfeng.settings import Settings
from tingfeng.web import local_formatter
from tingfeng.web.guard import require_user, roles_for
from tingfeng.web.i18n import N_, gettext
from tingfeng.web.labels import LEVEL_ZH

PER_PAGE = 50
STATUS_PATH = "/board/office/{message_id}/status"
CASE_PATH = "/board/office/{message_id}/case"
# The audit log's entries about a message, as the page names them.
HISTORY_LABELS = {
    "board.message": N_("留言提交"),
    "board.status": N_("状态更改"),
    "board.accept": N_("受理：登记处理单"),
    "board.answer": N_("答复发布"),
}
# What the office may set by hand, as the buttons say it.
MARK_LABELS = {"spam": N_("标为垃圾信息"), "closed": N_("无需答复，办结"), "new": N_("退回待处理")}
LEVELS = LEVEL_ZH


def _message_detail(conn: Connection, message_id: int) -> dict[str, Any] | None:
    """One message for the office: the message, its history, its case and the case's replies."""
    try:
        message = get_message(conn, message_id)
    except MessageNotFound:
        return None
    case = None
    replies: list[dict[str, Any]] = []
    if message["case_id"] is not None:
        try:
            row = get_case(conn, message["case_id"])
        except ProblemsError:  # a case id that no longer leads anywhere
            row = None
        if row is not None:
            case = {"id": row.id, "number": row.number, "state": row.state,
                    "state_label": STATES.get(row.state, row.state)}  # fmt: skip
            replies = list_replies(conn, row.id)
    history = list(reversed(audit.entries(conn, subject=f"board:{message_id}")))
    return {"message": message, "case": case, "replies": replies, "history": history}


def register_office(
    app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings
) -> None:
    """The office's page; its forms only when the board is enabled."""
    local = local_formatter(settings.default_timezone)

    def back(message_id: int, tab: str = "", **query: str) -> Response:
        shown = {"status": tab if tab in STATUS else "", "m": str(message_id)} | query
        return RedirectResponse(
            "/board/office?" + urlencode({k: v for k, v in shown.items() if v}), 303
        )

    @app.get("/board/office", response_class=HTMLResponse)
    def board_office(
        request: Request,
        status: str | None = None,
        m: int | None = None,
        page: int = Query(1, ge=1, le=10_000),
        done: str = "",
        err: str = "",
    ) -> HTMLResponse:
        """Messages by status, and the one chosen (`m`) with what can be done with it."""
        me = require_user(request)
        context: dict[str, Any] = {"enabled": settings.board_enabled, "local": local}
        if settings.board_enabled:
            tab = status if status in STATUS else None

            def work(conn: Connection) -> dict[str, Any]:
                rows = list_messages(conn, tab, limit=PER_PAGE + 1, offset=(page - 1) * PER_PAGE)
                return {
                    "messages": rows[:PER_PAGE],
                    "case_numbers": _case_numbers(conn, [r["case_id"] for r in rows]),
                    "has_next": len(rows) > PER_PAGE,
                    "counts": count_by_status(conn),
                    "chosen": _message_detail(conn, m) if m is not None else None,
                }

            with engine.connect() as conn:
                context |= work(conn)
            context |= {
                "tab": tab,
                "page": page,
                "statuses": STATUS,
                "kinds": KINDS,
                "levels": LEVELS,
                "states": STATES,
                "marks": MARK_LABELS,
                "office_statuses": OFFICE_STATUSES,
                "history_labels": HISTORY_LABELS,
                "can_mark": me.role in roles_for("POST", STATUS_PATH),
                "can_open": me.role in roles_for("POST", CASE_PATH),
                "notice": gettext("状态已更改") if done == "status" else "",
                "err": err[:500],
                "asked": m,
            }
        return templates.TemplateResponse(request, "board_office.html", context)

    if not settings.board_enabled:
        return

    @app.post(STATUS_PATH, response_model=None)
    def board_office_status(
        request: Request,
        message_id: int,
        status: str = Form(...),
        reason: str = Form(""),
        tab: str = Form(""),
    ) -> Response:
        """Mark a message spam or closed, or back to new; the reason goes to the audit log."""
        me = require_user(request)
        if not reason.strip():
            return back(message_id, tab, err=gettext("请写明理由：它会记入审计记录。"))
        try:
            with write_transaction(engine) as conn:
                set_status(conn, message_id, status, me, reason)
        except MessageNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except BoardError as exc:
            return back(message_id, tab, err=str(exc))
        return back(message_id, tab, done="status")

    @app.post(CASE_PATH, response_model=None)
    def board_office_case(
        request: Request,
        message_id: int,
        title: str = Form(""),
        level: str = Form("general"),
        tab: str = Form(""),
    ) -> Response:
        """Open a case from the message (受理): the message becomes 办理中, and the case's
        published reply will be its answer."""
        from tingfeng.cases.service import open_case

        me = require_user(request)
        try:
            with write_transaction(engine) as conn:
                message = get_message(conn, message_id)
                refusal = _refuse_case(message)
                if refusal:
                    return back(message_id, tab, err=refusal)
                case_id = open_case(
                    conn, me, settings, title=title.strip() or message["title"], origin="board",
                    summary=message["body"], board_message_id=message_id,
                    level=level if level in LEVELS else "general",
                )  # fmt: skip
        except MessageNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except ProblemsError as exc:
            return back(message_id, tab, err=str(exc))
        return RedirectResponse(f"/cases/{case_id}?msg=opened", 303)


def _case_numbers(conn: Connection, ids: list[int | None]) -> dict[int, str]:
    """The numbers (2026-0003) of the messages' cases, which people know them by."""
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    return dict(conn.execute(select(Case.id, Case.number).where(Case.id.in_(wanted))).all())


def _refuse_case(message: dict[str, Any]) -> str:
    """Why no case may be opened from this message now ("" when one may)."""
    if message["case_id"] is not None:
        return gettext("这条留言已经登记了处理单：请在处理单中办理。")
    if message["status"] == "answered":
        return gettext("这条留言已经答复。")
    if message["status"] == "spam":
        return gettext("这条留言被标为垃圾信息：请先退回待处理。")
    return ""
