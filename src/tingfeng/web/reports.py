"""报告: the reports made (by hand, by the clock, on the command line), a form to make one, and
downloads; the same as JSON under /api/v1/reports. Making one is for the office's analysts,
approvers and administrators (guard.py); everyone signed in may read and download."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine

from tingfeng.reports.common import FORMATS, KINDS
from tingfeng.reports.schedule import FIELDS as SCHEDULE_FIELDS
from tingfeng.reports.schedule import in_force, save_schedule, stored_schedule
from tingfeng.reports.service import (
    MEDIA_TYPES,
    ReportError,
    generate,
    get_report,
    list_reports,
    report_dict,
)
from tingfeng.settings import Settings
from tingfeng.web import local_formatter
from tingfeng.web.guard import require_user
from tingfeng.web.i18n import N_

KIND_LABELS: dict[str, str] = {
    "daily": N_("日报告表"),
    "weekly": N_("周报"),
    "monthly": N_("月报"),
    "quarterly": N_("季通报"),
    "special": N_("专报"),
    "zero": N_("零报告"),
}
FORMAT_LABELS: dict[str, str] = {"docx": "Word", "pdf": "PDF", "html": "HTML", "xlsx": "Excel"}


def _made_by(request: Request) -> str:
    person = require_user(request)
    return person.display_name or person.username


def _make(
    settings: Settings, engine: Engine, by: str, kind: str, fmt: str, day: str, event: str
) -> dict[str, Any]:
    """Check the request and make the report; HTTP 422 with the reason when it cannot."""
    if kind not in KINDS:
        raise HTTPException(422, f"unknown report kind {kind!r}: use one of {', '.join(KINDS)}")
    if fmt not in FORMATS:
        raise HTTPException(422, f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    on: date | None = None
    if day:
        try:
            on = date.fromisoformat(day)
        except ValueError:
            raise HTTPException(422, f"date {day!r} is not YYYY-MM-DD") from None
    event_id = int(event) if str(event or "").strip().isdigit() else None
    if kind == "special" and event_id is None:
        raise HTTPException(422, "a special report (专报) is about one event: give its id")
    try:
        made = generate(settings, engine, kind, fmt, day=on, event_id=event_id, created_by=by)
    except ReportError as exc:
        raise HTTPException(422, str(exc)) from None
    return made.record


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    """Add GET/POST /reports, GET/POST /api/v1/reports and GET /api/v1/reports/{id}/download."""
    local = local_formatter(settings.default_timezone)

    @app.get("/api/v1/reports")
    def api_reports(
        kind: str | None = None,
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        """Reports made, newest first, with the total."""
        with engine.connect() as conn:
            items, total = list_reports(conn, kind=kind, limit=limit, offset=offset)
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    @app.post("/api/v1/reports", status_code=201)
    async def api_make_report(request: Request) -> dict[str, Any]:
        """Make a report: {"kind", "format", "date" (YYYY-MM-DD), "event_id"}."""
        by = _made_by(request)
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise HTTPException(400, 'the body must be a JSON object, e.g. {"kind": "daily"}')
        record = _make(
            settings, engine, by, str(body.get("kind") or ""), str(body.get("format") or "docx"),
            str(body.get("date") or ""), str(body.get("event_id") or ""),
        )  # fmt: skip
        with engine.connect() as conn:
            return report_dict(get_report(conn, record["id"]))

    @app.get("/api/v1/reports/{report_id}/download")
    def api_download(report_id: int) -> Response:
        with engine.connect() as conn:
            try:
                row = get_report(conn, report_id)
            except ReportError as exc:
                raise HTTPException(404, str(exc)) from None
        path = Path(row.path)
        if not path.is_file():
            raise HTTPException(410, f"the file of report {report_id} is no longer there")
        name = f"{row.title or row.kind}-{row.number}.{row.format}".replace("/", "-")
        return FileResponse(path, media_type=MEDIA_TYPES.get(row.format), filename=name)

    @app.get("/api/v1/reports/schedule")
    def api_schedule() -> dict[str, Any]:
        """The schedule in force, and whether it was set on the page or comes from the settings."""
        with engine.connect() as conn:
            stored = stored_schedule(conn)
            current = in_force(conn, settings)
        return {k: getattr(current, k) for k in SCHEDULE_FIELDS} | {
            "source": "page" if stored else "settings"}  # fmt: skip

    @app.put("/api/v1/reports/schedule")
    async def api_set_schedule(request: Request) -> dict[str, Any]:
        """Set the schedule: {"report_schedule": "daily@08:00, weekly@08:30", "report_format",
        "report_email", "report_channels"} (administrators)."""
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise HTTPException(400, 'the body must be a JSON object: {"report_schedule": …}')
        return _save_schedule(request, body) | {"source": "page"}

    def _save_schedule(request: Request, values: dict[str, Any]) -> dict[str, str]:
        from tingfeng.db.engine import write_transaction

        values = {k: values.get(k, getattr(settings, k)) for k in SCHEDULE_FIELDS}
        try:
            with write_transaction(engine) as conn:
                return save_schedule(conn, require_user(request), values)
        except ReportError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.post("/reports/schedule", response_model=None)
    async def schedule_form(request: Request) -> Response:
        form = await request.form()
        try:
            _save_schedule(request, {k: str(form.get(k) or "") for k in SCHEDULE_FIELDS})
        except HTTPException as exc:
            return templates.TemplateResponse(
                request, "error.html", {"message": exc.detail, "back": "/reports"},
                status_code=exc.status_code,
            )  # fmt: skip
        return RedirectResponse("/reports?scheduled=1#schedule", status_code=303)

    @app.get("/reports", response_class=HTMLResponse)
    def reports_page(
        request: Request, made: int | None = None, page: int = Query(1, ge=1)
    ) -> HTMLResponse:
        require_user(request)
        per = 50
        with engine.connect() as conn:
            items, total = list_reports(conn, limit=per, offset=(page - 1) * per)
            schedule = in_force(conn, settings)
        for r in items:
            r["created_local"] = local(r["created_at"])
        yesterday = datetime.now(UTC).astimezone(local_zone(settings)).date() - timedelta(days=1)
        return templates.TemplateResponse(
            request,
            "reports.html",
            {
                "items": items, "total": total, "page": page, "pages": max(1, -(-total // per)),
                "made": made, "kinds": KIND_LABELS, "formats": FORMAT_LABELS,
                "yesterday": yesterday.isoformat(),
                "schedule": {k: getattr(schedule, k) for k in SCHEDULE_FIELDS},
                "scheduled": request.query_params.get("scheduled") == "1",
            },
        )  # fmt: skip

    @app.post("/reports", response_model=None)
    async def reports_form(request: Request) -> Response:
        by = _made_by(request)
        form = await request.form()

        def text(name: str) -> str:
            return str(form.get(name) or "").strip()

        try:
            record = _make(settings, engine, by, text("kind"), text("format") or "docx",
                           text("date"), text("event_id"))  # fmt: skip
        except HTTPException as exc:
            return templates.TemplateResponse(
                request, "error.html", {"message": exc.detail, "back": "/reports"},
                status_code=exc.status_code,
            )  # fmt: skip
        return RedirectResponse(f"/reports?made={record['id']}", status_code=303)


def local_zone(settings: Settings) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(settings.default_timezone)
