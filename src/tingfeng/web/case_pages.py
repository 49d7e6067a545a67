"""The pages of cases (处理单): the board by stage of work (看板), the list, a case's page with
the forms of its actions, and the ledger (台账).

Every page acts as the signed-in person through the same services as the API
(`tingfeng.cases`): the board and the list show only the cases they may see, and a case's page
offers only the actions their role may take now. A form posts, the service decides, and the
page comes back with what was done (`?done=`, `?msg=`) or the refusal (`?err=`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from tingfeng import audit
from tingfeng.cases.detail import case_detail, list_cases
from tingfeng.cases.kanban import COLUMNS as BOARD_COLUMNS
from tingfeng.cases.kanban import VIEWS, Filters, kanban
from tingfeng.cases.ledger import COLUMNS, ledger
from tingfeng.cases.permissions import WORK_ROLES
from tingfeng.cases.replies import STAGES
from tingfeng.cases.service import ORIGINS, TASK_KINDS
from tingfeng.cases.states import ACTIONS, OPEN_STATES, STATES
from tingfeng.db.engine import write_transaction
from tingfeng.office.people import Person
from tingfeng.problems import ProblemsError
from tingfeng.settings import Settings
from tingfeng.web import local_formatter
from tingfeng.web.guard import require_user, roles_for
from tingfeng.web.i18n import N_, gettext
from tingfeng.web.labels import LEVEL_ZH, ROLE_ZH

LEVELS = LEVEL_ZH
COLUMN_LABELS = {
    "intake": N_("新建·待研判"),
    "approval": N_("待审批"),
    "handling": N_("交办·核查"),
    "reply": N_("回复拟稿·待审"),
    "published": N_("已发布·跟踪"),
    "closed": N_("近 30 天办结"),
}
VIEW_LABELS = {"scope": N_("我可见的全部"), "department": N_("本单位"), "mine": N_("我的")}
ROLE_LABELS = ROLE_ZH
# The history's entries that are not state changes, and opening.
HISTORY_LABELS = {"open": N_("登记"), "progress": N_("进展")} | {
    name: a.label for name, a in ACTIONS.items()
}
PROGRESS_LABELS = {"open": N_("待完成"), "met": N_("已完成"), "cancelled": N_("已取消")}
TASK_STATUS = {"open": N_("待完成"), "done": N_("已完成"), "cancelled": N_("已取消")}
ORIGIN_DETAIL = {
    "office": N_("交办单位"),
    "instructions": N_("批示要求"),
    "deadline": N_("上级时限"),
    "caller": N_("来电人"),
    "outlet": N_("媒体"),
    "question": N_("问题"),
}
# What a form did, for the message at the top of the case's page (`?msg=`).
NOTICES = {
    "opened": N_("处理单已登记"),
    "draft": N_("回复草稿已保存"),
    "submit": N_("回复已提交审批"),
    "approve": N_("回复已审批"),
    "return": N_("回复已退回"),
    "publish": N_("回复已登记发布"),
    "task": N_("任务已添加"),
    "task_done": N_("任务已完成"),
    "progress": N_("进展已记录"),
}
REPLY_FORM_STEPS = ("submit", "approve", "return", "publish")


def countdown(seconds: int) -> str:
    """How long until a deadline, or how long past it, in the request's language."""
    left = abs(int(seconds))
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        span = gettext("%(d)s 天 %(h)s 小时") % {"d": days, "h": hours}
    elif hours:
        span = gettext("%(h)s 小时 %(m)s 分") % {"h": hours, "m": minutes}
    else:
        span = gettext("%(m)s 分钟") % {"m": minutes}
    return (gettext("超期 %(t)s") if seconds < 0 else gettext("剩 %(t)s")) % {"t": span}


def countdown_text() -> dict[str, str]:
    """The same phrases for the pages' script that keeps the countdowns current."""
    return {
        "days": gettext("%(d)s 天 %(h)s 小时"),
        "hours": gettext("%(h)s 小时 %(m)s 分"),
        "minutes": gettext("%(m)s 分钟"),
        "overdue": gettext("超期 %(t)s"),
        "left": gettext("剩 %(t)s"),
    }


def reply_steps(case: dict[str, Any], reply: dict[str, Any], role: str) -> list[str]:
    """The buttons of an unpublished reply that this role may press in the case's state now
    (the services check again, department included)."""
    steps: list[str] = []
    submit, approve, publish = (ACTIONS[n] for n in ("submit_reply", "approve_reply", "publish"))

    def may(action: Any) -> bool:
        return role in action.roles and case["state"] in action.sources

    if reply["state"] in ("draft", "returned") and may(submit):
        steps.append("submit")
    elif reply["state"] == "submitted" and may(approve):
        steps += ["approve", "return"]
    elif reply["state"] == "approved" and may(publish):
        steps.append("publish")
    return steps


def _filters(show: str | None, level: str | None, origin: str | None) -> Filters:
    # Unknown values are dropped rather than refused: a filter link should never break the page.
    return Filters(
        view=show if show in VIEWS else "scope",
        level=level if level in LEVELS else None,
        origin=origin if origin in ORIGINS else None,
    )


def register_pages(
    app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings
) -> None:
    local = local_formatter(settings.default_timezone)

    def read(work: Any) -> Any:
        from tingfeng.web.cases import _status

        with engine.connect() as conn:
            try:
                return work(conn)
            except ProblemsError as exc:
                raise HTTPException(_status(exc), str(exc)) from exc

    def back(case_ref: Any, **query: str) -> Response:
        """To the case's page with a notice (msg, done) or a refusal (err)."""
        shown = {k: v for k, v in query.items() if v}
        suffix = f"?{urlencode(shown)}" if shown else ""
        return RedirectResponse(f"/cases/{quote(str(case_ref))}{suffix}", 303)

    def page(request: Request, name: str, context: dict[str, Any]) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"local": local} | context)

    @app.get("/cases", response_class=HTMLResponse)
    def cases_page(
        request: Request,
        view: str = "",
        state: str | None = None,
        show: str | None = None,
        level: str | None = None,
        origin: str | None = None,
    ) -> HTMLResponse:
        """The board by stage of work; `?view=list` (or a `state`) the list by state."""
        me = require_user(request)
        if state and state not in STATES:
            state = None
        common = {
            "me": me,
            "origins": ORIGINS,
            "levels": LEVELS,
            "countdown": countdown,
            "countdown_text": countdown_text(),
        }
        if view == "list" or (state and view != "board"):
            rows = read(lambda c: list_cases(c, me, state=state, limit=500))
            return page(
                request,
                "cases.html",
                common | {"view": "list", "cases": rows, "states": STATES, "state": state},
            )
        filters = _filters(show, level, origin)
        columns = read(lambda c: kanban(c, me, datetime.now(UTC), filters))
        for column in columns:
            column["label"] = COLUMN_LABELS[column["key"]]
        return page(
            request,
            "cases.html",
            common
            | {
                "view": "board",
                "columns": columns,
                "filters": filters,
                "views": VIEW_LABELS,
                "total": sum(c["total"] for c in columns),
                "board_states": [s for _, group in BOARD_COLUMNS for s in group],
            },
        )

    @app.get("/cases/{case_ref}", response_class=HTMLResponse)
    def case_page(
        request: Request, case_ref: str, msg: str = "", done: str = "", err: str = ""
    ) -> HTMLResponse:
        me = require_user(request)
        now = datetime.now(UTC)
        d = read(lambda c: case_detail(c, me, case_ref, now=now))
        nexts = [a for a in ACTIONS.values() if d["state"] in a.sources]
        # The audit trail of the case and its replies, for those who may read the audit log.
        trail: list[dict[str, Any]] = []
        if me.role in roles_for("GET", "/api/v1/audit"):
            subjects = [f"case:{d['id']}", *(f"reply:{r['id']}" for r in d["replies"])]
            trail = read(
                lambda c: sorted(
                    (e for subject in subjects for e in audit.entries(c, subject=subject)),
                    key=lambda e: e["id"],
                )
            )
        for deadline in d["deadlines"]:
            due = datetime.fromisoformat(deadline["due_at"])
            deadline["seconds_left"] = int((due - now).total_seconds())
        notice = ""
        if done in ACTIONS:
            notice = gettext("%(action)s 已完成") % {"action": gettext(ACTIONS[done].label)}
        elif msg in NOTICES:
            notice = gettext(NOTICES[msg])
        may_work = me.role in WORK_ROLES and d["state"] in OPEN_STATES
        return page(
            request,
            "case.html",
            {
                "case": d,
                "next_actions": nexts,
                "states": STATES,
                "levels": LEVELS,
                "roles": ROLE_LABELS,
                "history_labels": HISTORY_LABELS,
                "progress_labels": PROGRESS_LABELS,
                "task_status": TASK_STATUS,
                "task_kinds": TASK_KINDS,
                "origin_detail": ORIGIN_DETAIL,
                "stages": {k: v for k, v in STAGES.items() if k != "point"},
                "reply_steps": {r["id"]: reply_steps(d, r, me.role) for r in d["replies"]},
                "may_draft": may_work,
                "may_work": may_work,
                "notice": notice,
                "err": err[:500],
                "trail": trail,
                "countdown": countdown,
                "countdown_text": countdown_text(),
            },
        )

    @app.post("/cases/{case_ref}/act", response_model=None)
    def case_act_form(
        request: Request,
        case_ref: str,
        action: str = Form(...),
        reason: str = Form(""),
        level: str = Form(""),
        handling: str = Form(""),
        department: str = Form(""),
        result: str = Form(""),
    ) -> Response:
        """The case page's action form: done, or the refusal shown on the page."""
        from tingfeng.cases.service import act

        me = require_user(request)
        try:
            with write_transaction(engine) as conn:
                row = act(conn, me, settings, case_ref, action, reason=reason,
                          level=level or None, handling=handling,
                          department=department or None, result=result)  # fmt: skip
        except ProblemsError as exc:
            return back(case_ref, err=str(exc))
        return back(row.id, done=action)

    @app.post("/cases/open", response_model=None)
    async def case_open_form(request: Request) -> Response:
        """登记处理单 from the alert or event page (their id), or the form on /cases."""
        from tingfeng.cases.service import open_case

        me = require_user(request)
        form = await request.form()

        def text(name: str) -> str:
            return str(form.get(name) or "").strip()

        def number(name: str) -> int | None:
            value = text(name)
            return int(value) if value.isdigit() else None

        detail = {k: text(k) for k in ORIGIN_DETAIL}
        origin = text("origin") or ("online" if number("alert_id") or number("event_id") else
                                    "manual")  # fmt: skip
        try:
            with write_transaction(engine) as conn:
                case_id = open_case(
                    conn, me, settings, title=text("title"), origin=origin,
                    summary=text("summary"), origin_detail=detail, alert_id=number("alert_id"),
                    event_id=number("event_id"), post_id=number("post_id"),
                    level=text("level") or None,
                )  # fmt: skip
        except ProblemsError as exc:
            # Back to the page the form was on, on this site only.
            where = urlsplit(request.headers.get("referer") or "").path or "/cases"
            return templates.TemplateResponse(
                request, "error.html", {"message": str(exc), "back": where}, status_code=422
            )
        return back(case_id, msg="opened")

    @app.post("/cases/{case_ref}/replies", response_model=None)
    def case_reply_form(
        request: Request, case_ref: str, text: str = Form(""), stage: str = Form("facts")
    ) -> Response:
        from tingfeng.cases.replies import draft_reply

        me = require_user(request)
        try:
            with write_transaction(engine) as conn:
                draft_reply(conn, me, case_ref, text, stage=stage)
        except ProblemsError as exc:
            return back(case_ref, err=str(exc))
        return back(case_ref, msg="draft")

    @app.post("/cases/{case_ref}/tasks", response_model=None)
    def case_task_form(
        request: Request,
        case_ref: str,
        title: str = Form(""),
        kind: str = Form("other"),
        assignee: str = Form(""),
        due: str = Form(""),
    ) -> Response:
        """Add a task (who does what by when: "2h", "4wh", "1wd")."""
        from tingfeng.cases.tasks import add_task

        me = require_user(request)
        try:
            with write_transaction(engine) as conn:
                add_task(conn, me, settings, case_ref, title, kind=kind,
                         assignee=assignee.strip() or None, due=due.strip() or None)  # fmt: skip
        except ProblemsError as exc:
            return back(case_ref, err=str(exc))
        return back(case_ref, msg="task")

    @app.post("/cases/{case_ref}/tasks/{task_id}/done", response_model=None)
    def case_task_done_form(
        request: Request, case_ref: str, task_id: int, note: str = Form("")
    ) -> Response:
        from tingfeng.cases.tasks import complete_task

        me = require_user(request)
        try:
            with write_transaction(engine) as conn:
                complete_task(conn, me, task_id, note=note)
        except ProblemsError as exc:
            return back(case_ref, err=str(exc))
        return back(case_ref, msg="task_done")

    @app.post("/cases/{case_ref}/progress", response_model=None)
    def case_progress_form(request: Request, case_ref: str, text: str = Form("")) -> Response:
        from tingfeng.cases.tasks import add_progress

        me = require_user(request)
        try:
            with write_transaction(engine) as conn:
                add_progress(conn, me, case_ref, text)
        except ProblemsError as exc:
            return back(case_ref, err=str(exc))
        return back(case_ref, msg="progress")

    @app.post("/replies/{reply_id}/{step}", response_model=None)
    async def reply_step_form(request: Request, reply_id: int, step: str) -> Response:
        """The case page's reply buttons: submit, approve, return (reason), publish."""
        from tingfeng.cases import replies

        me = require_user(request)
        form = await request.form()
        if step not in REPLY_FORM_STEPS:
            raise HTTPException(404, f"No reply step {step!r}.")
        case_id = (await run_in_threadpool(read, lambda c: replies.get_reply(c, reply_id))).case_id

        def value(name: str) -> str:
            return str(form.get(name) or "").strip()

        def work(conn: Connection) -> None:
            if step == "submit":
                replies.submit_reply(conn, me, settings, reply_id)
            elif step == "approve":
                replies.approve_reply(conn, me, settings, reply_id)
            elif step == "return":
                replies.return_reply(conn, me, settings, reply_id, value("reason"))
            else:
                replies.publish_reply(conn, me, settings, reply_id, platform=value("platform"),
                                      account=value("account"), url=value("url"))  # fmt: skip

        def run() -> str:
            try:
                with write_transaction(engine) as conn:
                    work(conn)
            except ProblemsError as exc:
                return str(exc)
            return ""

        # The form is read here; the database work goes to a thread, off the event loop.
        refused = await run_in_threadpool(run)
        if refused:
            return back(case_id, err=refused)
        return back(case_id, msg=step)

    @app.get("/ledger", response_class=HTMLResponse)
    def ledger_page(request: Request) -> HTMLResponse:
        me: Person = require_user(request)
        rows = read(lambda c: ledger(c, me, datetime.now(UTC), settings.default_timezone))
        return page(request, "ledger.html", {"rows": rows, "columns": COLUMNS, "states": STATES})
