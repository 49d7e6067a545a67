"""`tingfeng deadline`: a due time on the Chinese working-day calendar (no database needed)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

import typer

from tingfeng.cli.main import app, fail, settings_of

_START = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}$")
_WEEKEND_WORKDAY = "工作日·调休"


def _parse_start(value: str, tz: str) -> datetime:
    from tingfeng.cases.deadlines import DeadlineError, zone_of

    try:
        zone = zone_of(tz)
    except DeadlineError as exc:
        fail(f"--tz: {exc}")
    text = value.strip()
    try:
        if not _START.match(text):
            raise ValueError(text)
        return datetime.strptime(text.replace("T", " "), "%Y-%m-%d %H:%M").replace(tzinfo=zone)
    except ValueError:
        fail(f'--start {value!r} is not a time: write "YYYY-MM-DD HH:MM", e.g. "2026-02-13 10:00"')


def _label(day: dict[str, object]) -> str:
    from tingfeng.alerts.duty import HOLIDAYS_ZH

    if day["workday"]:
        return _WEEKEND_WORKDAY
    name = day["holiday"]
    return f"休息日·{HOLIDAYS_ZH.get(str(name), str(name))}" if name else "休息日·周末"


def _explain(first: date, last: date) -> None:
    from tingfeng.cases.deadlines import days_between

    days = days_between(first, last)
    if not days:
        typer.echo("没有跳过的休息日，也没有调休工作日。")
    for day in days:
        typer.echo(f"{day['date']} {_label(day)}")


@app.command("deadline")
def deadline(
    ctx: typer.Context,
    start: Annotated[
        str,
        typer.Option("--start", help='Local start time, "YYYY-MM-DD HH:MM".', show_default=False),
    ],
    working_days: Annotated[
        int | None,
        typer.Option("--working-days", help="Due the same time of day N working days later."),
    ] = None,
    working_hours: Annotated[
        float | None,
        typer.Option("--working-hours", help="Due after N hours of office time on working days."),
    ] = None,
    tz: Annotated[
        str | None, typer.Option("--tz", help="Time zone (default: default_timezone).")
    ] = None,
    office_hours: Annotated[
        str | None,
        typer.Option("--office-hours", help='Office hours, e.g. "08:30-12:00,14:00-17:30".'),
    ] = None,
    explain: Annotated[
        bool,
        typer.Option("--explain", help="Also list the rest days skipped and working weekends."),
    ] = False,
) -> None:
    """The due time (YYYY-MM-DD HH:MM) after working days or working hours, with statutory
    holidays and adjusted working days (调休) on the Chinese calendar."""
    from tingfeng.cases.deadlines import (
        DeadlineError,
        OfficeHours,
        add_working_days,
        add_working_hours,
        calendar_known,
    )

    settings = settings_of(ctx)
    zone = tz or settings.default_timezone
    begin = _parse_start(start, zone)
    if (working_days is None) == (working_hours is None):
        fail("give exactly one of --working-days N or --working-hours N")
    try:
        if working_days is not None:
            due = add_working_days(begin, working_days)
        else:
            office = OfficeHours.parse(office_hours or settings.office_hours)
            due = add_working_hours(begin, float(working_hours or 0), office)
    except DeadlineError as exc:
        fail(str(exc))
    typer.echo(due.strftime("%Y-%m-%d %H:%M"))
    if explain:
        _explain(begin.date(), due.date())
    for year in range(begin.year, due.year + 1):
        if not calendar_known(year):
            typer.echo(
                f"warning: no Chinese holiday data for {year}: only weekends were skipped. "
                "Update it: pip install -U chinesecalendar",
                err=True,
            )
