"""The API of cases (处理单), the ledger (台账) and the audit log; the pages are in
`tingfeng.web.case_pages`.

Everything acts as the signed-in person: the lists show only the cases they may see, and each
action goes through the same role and department checks as on the command line.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy import Connection
from starlette.background import BackgroundTask

from tingfeng import audit
from tingfeng.cases.detail import case_detail, list_cases
from tingfeng.cases.ledger import ledger, to_csv, to_xlsx
from tingfeng.cases.permissions import PermissionDenied
from tingfeng.cases.states import STATES
from tingfeng.db.engine import write_transaction
from tingfeng.problems import ProblemsError
from tingfeng.settings import Settings
from tingfeng.web.guard import require_user, roles_for
from tingfeng.web.openapi_errors import CSV, XLSX, downloads

T = TypeVar("T")


class CaseIn(BaseModel):
    title: str = ""
    origin: str = "manual"
    summary: str = ""
    origin_detail: dict[str, Any] = Field(default_factory=dict)
    alert_id: int | None = None
    event_id: int | None = None
    post_id: int | None = None
    board_message_id: int | None = None
    template: str | None = None
    level: str | None = None
    department: str | None = None


class ActionIn(BaseModel):
    reason: str = ""
    level: str | None = None
    handling: str = ""
    department: str | None = None
    result: str = ""


class TaskIn(BaseModel):
    title: str
    kind: str = "other"
    assignee: str | None = None
    due: str | None = Field(None, examples=["2h", "4wh", "1wd"])


class TextIn(BaseModel):
    text: str
    stage: str = "facts"
    in_reply_to_post_id: int | None = None
    note: str = ""


class ReplyStepIn(BaseModel):
    text: str | None = None
    reason: str = ""
    note: str = ""
    platform: str = ""
    account: str = ""
    url: str = ""


REPLY_STEPS = ("revise", "submit", "approve", "return", "publish")


def _status(exc: ProblemsError) -> int:
    if isinstance(exc, PermissionDenied) or "may not" in str(exc):
        return 403
    return 404 if str(exc).startswith(("No case", "No reply")) else 422


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    def read(work: Callable[[Connection], T]) -> T:
        with engine.connect() as conn:
            try:
                return work(conn)
            except ProblemsError as exc:
                raise HTTPException(_status(exc), str(exc)) from exc

    def write(work: Callable[[Connection], T]) -> T:
        try:
            with write_transaction(engine) as conn:
                return work(conn)
        except ProblemsError as exc:
            raise HTTPException(_status(exc), str(exc)) from exc

    # --- reading -------------------------------------------------------------------------------

    @app.get("/api/v1/cases")
    def api_cases(
        request: Request,
        state: str | None = None,
        open_only: bool = False,
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        """The cases the signed-in person may see, newest first."""
        me = require_user(request)
        rows = read(
            lambda c: list_cases(c, me, state=state, open_only=open_only, limit=limit,
                                 offset=offset)
        )  # fmt: skip
        return {"cases": rows, "states": STATES}

    @app.get("/api/v1/cases/{case_ref}")
    def api_case(request: Request, case_ref: str) -> dict[str, Any]:
        """One case with history, tasks, deadlines, replies, evidence and the actions the
        signed-in person may take."""
        me = require_user(request)
        return read(lambda c: case_detail(c, me, case_ref))

    @app.get(
        "/api/v1/cases/{case_ref}/export",
        response_class=FileResponse,
        responses=downloads("application/zip"),
    )
    def api_case_export(request: Request, case_ref: str) -> FileResponse:
        """Everything about the case as one zip (case.json, posts, audit entries, evidence
        files, case.html, SHA-256 checksums), as the signed-in person may see it."""
        from tingfeng.cases.export import export_to_file

        me = require_user(request)
        fd, name = tempfile.mkstemp(prefix="tingfeng-case-", suffix=".zip")
        os.close(fd)
        try:
            summary = export_to_file(
                engine, settings, me, case_ref, Path(name),
                with_audit=me.role in roles_for("GET", "/api/v1/audit"),
            )  # fmt: skip
        except BaseException as exc:
            os.unlink(name)
            if isinstance(exc, ProblemsError):
                raise HTTPException(_status(exc), str(exc)) from exc
            raise
        return FileResponse(
            name, media_type="application/zip", filename=f"case-{summary['case']}.zip",
            headers={"X-Content-SHA256": summary["sha256"]},
            background=BackgroundTask(os.unlink, name),
        )  # fmt: skip

    @app.get("/api/v1/ledger", responses=downloads(CSV, XLSX))
    def api_ledger(
        request: Request, format: str = Query("json", pattern="^(json|csv|xlsx)$")
    ) -> Any:
        """The ledger; `format=csv` or `xlsx` downloads it."""
        me = require_user(request)
        rows = read(lambda c: ledger(c, me, datetime.now(UTC), settings.default_timezone))
        if format == "csv":
            return Response(
                to_csv(rows), media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="ledger.csv"'},
            )  # fmt: skip
        if format == "xlsx":
            return Response(
                to_xlsx(rows),
                media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                headers={"Content-Disposition": 'attachment; filename="ledger.xlsx"'},
            )
        return {"ledger": [{k: v for k, v in r.items() if k != "next_due_at"} for r in rows]}

    @app.get("/api/v1/audit")
    def api_audit(
        subject: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
        before_id: int | None = None,
    ) -> dict[str, Any]:
        """The newest audit entries (of one subject, e.g. case:3)."""
        return {"entries": read(lambda c: audit.entries(c, subject=subject, limit=limit,
                                                        before_id=before_id))}  # fmt: skip

    # --- acting --------------------------------------------------------------------------------

    @app.post("/api/v1/cases", status_code=201)
    def api_open_case(request: Request, body: CaseIn) -> dict[str, Any]:
        """Open a case (from an alert, event, post, board message, or by hand)."""
        from tingfeng.cases.service import open_case

        me = require_user(request)
        case_id = write(
            lambda c: open_case(c, me, settings, **body.model_dump(exclude={"board_message_id"}),
                                board_message_id=body.board_message_id)
        )  # fmt: skip
        return read(lambda c: case_detail(c, me, case_id))

    @app.post("/api/v1/cases/{case_ref}/actions/{action}")
    def api_act(request: Request, case_ref: str, action: str, body: ActionIn) -> dict[str, Any]:
        """Take a workflow action (see `actions` of the case for those open to you)."""
        from tingfeng.cases.service import act

        me = require_user(request)
        write(lambda c: act(c, me, settings, case_ref, action.replace("-", "_"),
                            **body.model_dump()))  # fmt: skip
        return read(lambda c: case_detail(c, me, case_ref))

    @app.post("/api/v1/cases/{case_ref}/tasks", status_code=201)
    def api_task(request: Request, case_ref: str, body: TaskIn) -> dict[str, Any]:
        from tingfeng.cases.tasks import add_task

        me = require_user(request)
        task_id = write(lambda c: add_task(c, me, settings, case_ref, body.title, kind=body.kind,
                                           assignee=body.assignee, due=body.due))  # fmt: skip
        return {"task_id": task_id}

    @app.post("/api/v1/cases/{case_ref}/progress")
    def api_progress(request: Request, case_ref: str, body: TextIn) -> dict[str, Any]:
        from tingfeng.cases.tasks import add_progress

        me = require_user(request)
        write(lambda c: add_progress(c, me, case_ref, body.text))
        return {"ok": True}

    @app.post("/api/v1/cases/{case_ref}/replies", status_code=201)
    def api_reply(request: Request, case_ref: str, body: TextIn) -> dict[str, Any]:
        """Draft a reply; then /api/v1/replies/{id}/submit, approve, return, publish."""
        from tingfeng.cases.replies import draft_reply

        me = require_user(request)
        reply_id = write(
            lambda c: draft_reply(c, me, case_ref, body.text, stage=body.stage,
                                  in_reply_to_post_id=body.in_reply_to_post_id)
        )  # fmt: skip
        return {"reply_id": reply_id}

    @app.post("/api/v1/replies/{reply_id}/{step}")
    def api_reply_step(
        request: Request, reply_id: int, step: str, body: ReplyStepIn
    ) -> dict[str, Any]:
        """A step of a reply: revise (text), submit, approve (note), return (reason),
        publish (platform, account, url; the text must be the approved one if given)."""
        from tingfeng.cases import replies

        me = require_user(request)
        if step not in REPLY_STEPS:
            raise HTTPException(404, f"No reply step {step!r}: use {', '.join(REPLY_STEPS)}.")

        def work(c: Connection) -> Any:
            if step == "revise":
                return replies.revise_reply(c, me, reply_id, body.text or "", note=body.note)
            if step == "submit":
                return replies.submit_reply(c, me, settings, reply_id)
            if step == "approve":
                return replies.approve_reply(c, me, settings, reply_id, note=body.note)
            if step == "return":
                return replies.return_reply(c, me, settings, reply_id, body.reason)
            return replies.publish_reply(c, me, settings, reply_id, platform=body.platform,
                                         account=body.account, url=body.url, text=body.text)  # fmt: skip

        result = write(work)
        return {"reply_id": reply_id, "step": step, "result": result}

    from tingfeng.web.case_pages import register_pages

    register_pages(app, engine, templates, settings)
