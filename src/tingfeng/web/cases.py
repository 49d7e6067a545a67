"""Pages and API for cases (处理单), the ledger (台账) and the audit log.

Until sign-in arrives (issue 7) these are read-only: every case is shown, and the actions are
taken on the command line (`tingfeng case act … --as USER`), where role and department checks
apply. The pages list the actions the state machine allows next.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection

from tingfeng import audit
from tingfeng.cases.detail import case_detail, list_cases
from tingfeng.cases.ledger import COLUMNS, ledger, to_csv, to_xlsx
from tingfeng.cases.service import CaseError
from tingfeng.cases.states import ACTIONS, STATES
from tingfeng.settings import Settings
from tingfeng.web import local_formatter

T = TypeVar("T")


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    local = local_formatter(settings.default_timezone)

    def read(work: Callable[[Connection], T]) -> T:
        with engine.connect() as conn:
            try:
                return work(conn)
            except CaseError as exc:
                raise HTTPException(
                    404 if str(exc).startswith("No case") else 422, str(exc)
                ) from exc

    @app.get("/api/v1/cases")
    def api_cases(
        state: str | None = None,
        open_only: bool = False,
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        """Cases, newest first."""
        rows = read(
            lambda c: list_cases(c, None, state=state, open_only=open_only, limit=limit,
                                 offset=offset)
        )  # fmt: skip
        return {"cases": rows, "states": STATES}

    @app.get("/api/v1/cases/{case_ref}")
    def api_case(case_ref: str) -> dict[str, Any]:
        """One case with history, tasks, deadlines, replies and evidence."""
        return read(lambda c: case_detail(c, None, case_ref))

    @app.get("/api/v1/ledger")
    def api_ledger(format: str = Query("json", pattern="^(json|csv|xlsx)$")) -> Any:
        """The ledger; `format=csv` or `xlsx` downloads it."""
        rows = read(lambda c: ledger(c, None, datetime.now(UTC), settings.default_timezone))
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

    @app.get("/cases", response_class=HTMLResponse)
    def cases_page(request: Request, state: str | None = None) -> HTMLResponse:
        if state and state not in STATES:
            state = None
        rows = read(lambda c: list_cases(c, None, state=state, limit=500))
        return templates.TemplateResponse(
            request, "cases.html",
            {"cases": rows, "states": STATES, "state": state, "local": local},
        )  # fmt: skip

    @app.get("/cases/{case_ref}", response_class=HTMLResponse)
    def case_page(request: Request, case_ref: str) -> HTMLResponse:
        d = read(lambda c: case_detail(c, None, case_ref))
        nexts = [a for a in ACTIONS.values() if d["state"] in a.sources]
        return templates.TemplateResponse(
            request, "case.html",
            {"case": d, "next_actions": nexts, "states": STATES, "local": local},
        )  # fmt: skip

    @app.get("/ledger", response_class=HTMLResponse)
    def ledger_page(request: Request) -> HTMLResponse:
        rows = read(lambda c: ledger(c, None, datetime.now(UTC), settings.default_timezone))
        return templates.TemplateResponse(
            request, "ledger.html", {"rows": rows, "columns": COLUMNS}
        )
