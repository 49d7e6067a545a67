"""API and page for the duty roster (值班) and the office's people and departments.

Who acts is the signed-in person (tingfeng.web.guard).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from tingfeng.alerts.duty import (
    DAY_KINDS,
    DUTY_ROLES,
    DutyError,
    add_shift,
    file_report,
    find_shift,
    get_shift,
    handover_for,
    list_shifts,
    missing_reports,
    on_duty,
    parse_date,
    remove_shift,
    roster,
    swap,
    update_shift,
)
from tingfeng.db.engine import write_transaction
from tingfeng.office.people import (
    ROLES,
    OfficeError,
    add_department,
    add_user,
    find_user,
    list_departments,
    list_users,
)
from tingfeng.settings import Settings
from tingfeng.web import local_formatter
from tingfeng.web.guard import require_user
from tingfeng.web.i18n import N_

T = TypeVar("T")
Ref = int | str  # an id, or a name (shift name, user name)

# The roster speaks Chinese (tingfeng.alerts.duty: weekdays, holidays, duty roles); the page
# prints these through _(), so they are marked here for the English catalogue.
WEEKDAYS = (N_("周一"), N_("周二"), N_("周三"), N_("周四"), N_("周五"), N_("周六"), N_("周日"))
HOLIDAYS = (
    N_("元旦"), N_("春节"), N_("清明节"), N_("劳动节"), N_("端午节"), N_("国庆节"), N_("中秋节"),
    N_("抗战胜利纪念日"),
)  # fmt: skip
DUTY_ROLE_LABELS = {"A": N_("主班"), "B": N_("副班")}
# A filed report in the handover notes, and in the roster's report column.
REPORT_KINDS = {"zero": N_("零报告"), "notable": N_("值班报告")}
REPORT_STATES = {"zero": N_("零报告"), "notable": N_("已报")}


class ShiftIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    starts_at: str = Field(examples=["08:00"])
    hours: float
    days: str = "all"
    rotation: dict[str, list[Ref]] = Field(examples=[{"A": [1, 2], "B": [3]}])
    starts_on: str = Field(examples=["2026-11-23"])
    report_to: dict[str, Any] | None = None


class ShiftPatch(BaseModel):
    name: str | None = None
    starts_at: str | None = None
    hours: float | None = None
    days: str | None = None
    rotation: dict[str, list[Ref]] | None = None
    starts_on: str | None = None
    report_to: dict[str, Any] | None = None
    active: bool | None = None


class SwapIn(BaseModel):
    shift: Ref
    on_date: str
    role: str = "A"
    user: Ref
    reason: str | None = Field(None, max_length=2000)
    by: str | None = Field(None, max_length=200)


class ReportIn(BaseModel):
    shift: Ref
    on_date: str
    kind: str = Field(examples=["notable", "zero"])
    items: list[dict[str, Any] | str] = Field(default_factory=list, max_length=500)
    handover: str = Field("", max_length=20_000)
    user_id: int | None = None
    replace: bool = False


class PersonIn(BaseModel):
    username: str
    display_name: str | None = None
    role: str = "analyst"
    department: Ref | None = None
    email: str | None = None
    phone: str | None = None


class DepartmentIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    parent: Ref | None = None


def _message(exc: Exception) -> str:
    # OfficeError is sometimes raised with a plain string where ProblemsError wants a list.
    problems = getattr(exc, "problems", None)
    return "".join(problems) if isinstance(problems, str) else str(exc)


def _user_ids(conn: Any, refs: list[Ref]) -> list[int]:
    return [r if isinstance(r, int) else find_user(conn, r).id for r in refs]


def _rotation(conn: Any, rotation: dict[str, list[Ref]]) -> dict[str, list[int]]:
    return {role: _user_ids(conn, refs) for role, refs in rotation.items()}


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    """Add the duty and people routes to `app`."""
    tz = settings.default_timezone

    def write(work: Callable[[Any], T]) -> T:
        try:
            with write_transaction(engine) as conn:
                return work(conn)
        except (DutyError, OfficeError) as exc:
            raise HTTPException(422, _message(exc)) from exc

    def read(work: Callable[[Any], T]) -> T:
        try:
            with engine.connect() as conn:
                return work(conn)
        except (DutyError, OfficeError) as exc:
            raise HTTPException(422, _message(exc)) from exc

    def moment(at: str | None) -> datetime:
        if not at:
            return datetime.now(ZoneInfo(tz))
        try:
            parsed = datetime.fromisoformat(at)
        except ValueError as exc:
            raise HTTPException(422, f"at={at!r} is not a time (ISO 8601).") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo(tz))

    local = local_formatter(tz, "%m-%d %H:%M")

    def now_view(conn: Any, at: datetime) -> dict[str, Any]:
        people = {u.id: u for u in list_users(conn)}
        return {
            "at": at.isoformat(),
            "on_duty": [
                {
                    "user_id": d.user_id,
                    "name": people[d.user_id].display_name if d.user_id in people else None,
                    "phone": people[d.user_id].phone if d.user_id in people else None,
                    "role": d.role,
                    **d.occurrence.as_dict(),
                }
                for d in on_duty(conn, at, tz)
            ],
            "handover": handover_for(conn, at, tz),
        }

    # --- the roster ---------------------------------------------------------------------------

    @app.get("/api/v1/duty/now")
    def api_duty_now(at: str | None = None) -> dict[str, Any]:
        """Who is on duty (now or `at`), and the handover notes to read."""
        when = moment(at)
        return read(lambda conn: now_view(conn, when))

    @app.get("/api/v1/duty/roster")
    def api_duty_roster(
        start: str | None = Query(None, alias="from"), days: int = Query(7, ge=1, le=366)
    ) -> dict[str, Any]:
        def work(conn: Any) -> dict[str, Any]:
            first = parse_date(start, "from date") if start else moment(None).date()
            return {"from": first.isoformat(), "days": roster(conn, first, days, tz)}

        return read(work)

    @app.get("/api/v1/duty/shifts")
    def api_duty_shifts() -> dict[str, Any]:
        return read(lambda conn: {"shifts": list_shifts(conn)})

    @app.post("/api/v1/duty/shifts", status_code=201)
    def api_duty_shift_add(body: ShiftIn) -> dict[str, Any]:
        def work(conn: Any) -> dict[str, Any]:
            shift_id = add_shift(
                conn,
                body.name,
                body.starts_at,
                body.hours,
                days=body.days,
                rotation=_rotation(conn, body.rotation),
                starts_on=body.starts_on,
                report_to=body.report_to,
            )
            return get_shift(conn, shift_id)

        return write(work)

    @app.patch("/api/v1/duty/shifts/{ref}")
    def api_duty_shift_update(ref: str, body: ShiftPatch) -> dict[str, Any]:
        def work(conn: Any) -> dict[str, Any]:
            shift_id = find_shift(conn, ref)
            values = body.model_dump(exclude_unset=True)
            if values.get("rotation") is not None:
                values["rotation"] = _rotation(conn, values["rotation"])
            update_shift(conn, shift_id, **values)
            return get_shift(conn, shift_id)

        return write(work)

    @app.delete("/api/v1/duty/shifts/{ref}")
    def api_duty_shift_remove(ref: str) -> dict[str, Any]:
        def work(conn: Any) -> dict[str, Any]:
            shift_id = find_shift(conn, ref)
            remove_shift(conn, shift_id)
            return {"deleted": shift_id}

        return write(work)

    @app.post("/api/v1/duty/swaps", status_code=201)
    def api_duty_swap(request: Request, body: SwapIn) -> dict[str, Any]:
        by = require_user(request).username

        def work(conn: Any) -> dict[str, Any]:
            shift_id = find_shift(conn, body.shift)
            user_id = _user_ids(conn, [body.user])[0]
            day = parse_date(body.on_date)
            swap(conn, shift_id, day, body.role, user_id, reason=body.reason, by=by)
            return {"shift_id": shift_id, "on_date": day.isoformat(), "role": body.role,
                    "user_id": user_id}  # fmt: skip

        return write(work)

    @app.post("/api/v1/duty/reports", status_code=201)
    def api_duty_report(body: ReportIn) -> dict[str, Any]:
        def work(conn: Any) -> dict[str, Any]:
            shift_id = find_shift(conn, body.shift)
            report_id = file_report(
                conn,
                shift_id,
                parse_date(body.on_date),
                kind=body.kind,
                items=body.items,
                handover=body.handover,
                user_id=body.user_id,
                now=moment(None),
                tz=tz,
                replace=body.replace,
            )
            return {"id": report_id, "shift_id": shift_id, "on_date": body.on_date}

        return write(work)

    @app.get("/api/v1/duty/missing")
    def api_duty_missing(at: str | None = None) -> dict[str, Any]:
        """Occurrences of the last 7 days whose report is overdue (after the grace minutes)."""
        when = moment(at)
        grace = settings.duty_report_grace_minutes

        def work(conn: Any) -> dict[str, Any]:
            found = missing_reports(conn, when, tz, grace)
            return {"grace_minutes": grace, "missing": [o.as_dict() for o in found]}

        return read(work)

    # --- people -------------------------------------------------------------------------------

    @app.get("/api/v1/people")
    def api_people() -> dict[str, Any]:
        return read(lambda conn: {"people": [u.as_dict() for u in list_users(conn)]})

    @app.post("/api/v1/people", status_code=201)
    def api_people_add(body: PersonIn) -> dict[str, Any]:
        return write(
            lambda conn: add_user(
                conn,
                body.username,
                body.display_name,
                role=body.role,
                department=body.department,
                email=body.email,
                phone=body.phone,
            ).as_dict()
        )

    @app.get("/api/v1/departments")
    def api_departments() -> dict[str, Any]:
        return read(lambda conn: {"departments": list_departments(conn)})

    @app.post("/api/v1/departments", status_code=201)
    def api_department_add(body: DepartmentIn) -> dict[str, Any]:
        def work(conn: Any) -> dict[str, Any]:
            did = add_department(conn, body.name, body.parent)
            return next(d for d in list_departments(conn) if d["id"] == did)

        return write(work)

    # --- the page -----------------------------------------------------------------------------

    @app.get("/duty", response_class=HTMLResponse)
    def duty_page(request: Request, start: str | None = Query(None, alias="from")) -> HTMLResponse:
        """Now, the handover notes, overdue reports, seven days of roster (from today or
        `from`) and the report form."""
        at = moment(None)
        today = at.date()
        try:
            first = parse_date(start, "from date") if start else today
        except DutyError as exc:
            raise HTTPException(422, str(exc)) from exc

        def work(conn: Any) -> dict[str, Any]:
            people = list_users(conn)
            names = {u.id: u.display_name for u in people}
            missing = missing_reports(conn, at, tz, settings.duty_report_grace_minutes)
            return {
                "now": now_view(conn, at),
                "days": [_with_adjusted(day) for day in roster(conn, first, 7, tz)],
                "shifts": [s for s in list_shifts(conn) if s["active"]],
                "people": [u for u in people if u.active],
                "missing": [
                    {**o.as_dict(), "a_name": names.get(o.members["A"] or 0)} for o in missing
                ],
            }

        context = read(work)
        return templates.TemplateResponse(
            request,
            "duty.html",
            {
                **context,
                "today": today.isoformat(),
                "first": first.isoformat(),
                "at": at.strftime("%Y-%m-%d %H:%M"),
                "day_kinds": DAY_KINDS,
                "duty_roles": {role: DUTY_ROLE_LABELS.get(role, role) for role in DUTY_ROLES},
                "report_kinds": REPORT_KINDS,
                "report_states": REPORT_STATES,
                "roles": ROLES,
                "preselect": _preselect(context["now"], context["missing"], today),
                "local": local,
            },
        )


def _with_adjusted(day: dict[str, Any]) -> dict[str, Any]:
    """Marks a weekend day turned into a working day (调休), which the roster tags apart."""
    weekend = date.fromisoformat(day["date"]).weekday() >= 5
    return {**day, "adjusted": bool(day["workday"] and weekend and not day["holiday"])}


def _preselect(now: dict[str, Any], missing: list[dict[str, Any]], today: date) -> dict[str, Any]:
    """What the report form starts with: the running occurrence, else the latest one whose
    report is missing, else today."""
    if now["on_duty"]:
        first = now["on_duty"][0]
        return {"shift_id": first["shift_id"], "on_date": first["on_date"]}
    if missing:
        return {"shift_id": missing[-1]["shift_id"], "on_date": missing[-1]["on_date"]}
    return {"shift_id": None, "on_date": today.isoformat()}
