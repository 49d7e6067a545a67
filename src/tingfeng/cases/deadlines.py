"""Due times per level and step (时限) on the Chinese working-day calendar.

A deadline is a `Duration` added to a start: natural time ("2h", "90m", counted around the
clock), calendar days ("3d"), working days ("1wd", the same time of day on the n-th working
day) or working hours ("4wh", only time inside office hours on working days). Working days
come from `tingfeng.workdays` (statutory holidays and adjusted working days, 调休).

`DEFAULT_SLA` holds the due time of every step for every level; a case template may override
any of them (`validate_sla`). Instants are aware datetimes; working days and office hours are
read in the local time zone given to each call. Working hours and days are wall-clock time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar

from tingfeng.problems import ProblemsError
from tingfeng.web.i18n import N_
from tingfeng.workdays import holiday_name, is_workday

LEVELS: dict[str, str] = {"general": "一般", "serious": "较大", "major": "重大", "critical": "特大"}
STEP_LABELS: dict[str, str] = {
    "acknowledge": N_("签收"),
    "report": N_("报告"),
    "feedback": N_("部门反馈"),
    "reply": N_("公开回应"),
    "close": N_("办结"),
}
DEFAULT_SLA: dict[str, dict[str, str]] = {
    "acknowledge": {"critical": "1h", "major": "2h", "serious": "4wh", "general": "1wd"},
    "report": {"critical": "2h", "major": "4h", "serious": "1wd", "general": "2wd"},
    "feedback": {"critical": "4h", "major": "1wd", "serious": "1wd", "general": "3wd"},
    # 5h for 特大: the practice's "5小时内发布权威信息".
    "reply": {"critical": "5h", "major": "1wd", "serious": "2wd", "general": "5wd"},
    "close": {"critical": "5wd", "major": "10wd", "serious": "15wd", "general": "20wd"},
}
UNITS: dict[str, str] = {
    "m": "minutes",
    "h": "hours",
    "wh": "working hours",
    "wd": "working days",
    "d": "calendar days",
}
# Upper bounds keep a typo ("100wd" for "10wd") from walking the calendar for decades.
MAX_AMOUNT: dict[str, float] = {"m": 60 * 24 * 366, "h": 24 * 366, "wh": 2000, "wd": 250, "d": 366}
MAX_WORKING_DAYS = 2500
MAX_WORKING_HOURS = 20000.0

_LEVEL_ALIASES: dict[str, str] = {
    **{k: k for k in LEVELS},
    **{v: k for k, v in LEVELS.items()},
    "iv": "general",
    "iii": "serious",
    "ii": "major",
    "i": "critical",
}
_STEP_ALIASES: dict[str, str] = {
    **{k: k for k in STEP_LABELS},
    **{v: k for k, v in STEP_LABELS.items()},
}
_SPEC = re.compile(r"^(\d+(?:\.\d+)?)\s*(wh|wd|m|h|d)$")
_HHMM = re.compile(r"^(\d{1,2}):([0-5]\d)$")
_SPEC_HELP = 'use a number and a unit: "90m", "2h", "4wh" (working hours), "1wd", "3d"'


class DeadlineError(ProblemsError):
    """A duration, office hours or SLA table was refused; the message says what to write."""

    what = "deadline settings"


# --- the calendar ----------------------------------------------------------------------------


def calendar_known(year: int) -> bool:
    """Whether chinese-calendar has the holiday schedule of `year` (else: weekends only)."""
    try:
        chinese_calendar.is_workday(date(year, 6, 1))
    except NotImplementedError:
        return False
    return True


def zone_of(tz: str) -> ZoneInfo:
    from tingfeng.workdays import zone

    try:
        return zone(tz)
    except ValueError as exc:
        raise DeadlineError(str(exc)) from exc


def _local(start: datetime, tz: str | None) -> datetime:
    if start.tzinfo is None or start.utcoffset() is None:
        raise DeadlineError(
            f"The start {start.isoformat()} has no time zone: give an aware datetime."
        )
    return start.astimezone(zone_of(tz)) if tz else start


def add_working_days(start: datetime, n: int, *, tz: str | None = None) -> datetime:
    """The same local time of day on the n-th working day after start's date (n = 0: start).

    Local means `tz` if given, else start's own zone; the result is in that zone. A start on a
    rest day still counts from its own date: Sunday + 1 is the next working day after Sunday.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise DeadlineError(f"Working days must be a whole number of at least 0, not {n!r}.")
    if n > MAX_WORKING_DAYS:
        raise DeadlineError(f"At most {MAX_WORKING_DAYS} working days, not {n}.")
    local = _local(start, tz)
    if n == 0:
        return local
    day = local.date()
    while n:
        day += timedelta(days=1)
        n -= is_workday(day)
    return datetime.combine(day, local.timetz())


def add_calendar_days(start: datetime, n: int, *, tz: str | None = None) -> datetime:
    """The same local time of day n calendar days later."""
    local = _local(start, tz)
    return datetime.combine(local.date() + timedelta(days=n), local.timetz())


def days_between(first: date, last: date) -> list[dict[str, Any]]:
    """Every date in [first, last] that is a rest day or an adjusted working day (调休), for
    explaining a due time: {"date", "workday", "holiday" (English name or None), "weekend"}."""
    out: list[dict[str, Any]] = []
    day = first
    while day <= last:
        workday, weekend = is_workday(day), day.weekday() >= 5
        if not workday or weekend:
            out.append(
                {"date": day, "workday": workday, "holiday": holiday_name(day), "weekend": weekend}
            )
        day += timedelta(days=1)
    return out


# --- office hours ----------------------------------------------------------------------------


def _minutes(text: str, what: str) -> int:
    match = _HHMM.match(text.strip())
    hours = int(match.group(1)) if match else -1
    minutes = int(match.group(2)) if match else 0
    if not match or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{what} {text.strip()!r} is not a time: use HH:MM from 00:00 to 24:00")
    return hours * 60 + minutes


@dataclass(frozen=True)
class OfficeHours:
    """Office hours of a working day: ordered, non-overlapping spans in minutes after midnight."""

    spans: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, text: str) -> OfficeHours:
        """From "08:30-12:00,14:00-17:30" (local time; "24:00" may end the last span)."""
        problems: list[str] = []
        spans: list[tuple[int, int]] = []
        parts = [p.strip() for p in str(text).split(",")]
        if not any(parts):
            raise DeadlineError(
                'Office hours are empty: write spans such as "08:30-12:00,14:00-17:30".'
            )
        for part in parts:
            begin, sep, end = part.partition("-")
            if not sep:
                problems.append(f"office hours {part!r}: write a span as HH:MM-HH:MM")
                continue
            try:
                span = (_minutes(begin, "start"), _minutes(end, "end"))
            except ValueError as exc:
                problems.append(f"office hours {part!r}: {exc}")
                continue
            if span[0] >= span[1]:
                problems.append(f"office hours {part!r}: the start must come before the end")
                continue
            if spans and span[0] < spans[-1][1]:
                problems.append(
                    f"office hours {part!r}: overlaps or comes before the span before it; "
                    "list spans in order of the day without overlaps"
                )
                continue
            spans.append(span)
        if problems:
            raise DeadlineError(problems)
        return cls(tuple(spans))

    def __str__(self) -> str:
        return ",".join(f"{_hhmm(a)}-{_hhmm(b)}" for a, b in self.spans)

    @property
    def hours_per_day(self) -> float:
        return sum(b - a for a, b in self.spans) / 60


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _office(office: OfficeHours | str) -> OfficeHours:
    return office if isinstance(office, OfficeHours) else OfficeHours.parse(office)


def add_working_hours(
    start: datetime, hours: float, office: OfficeHours | str, *, tz: str | None = None
) -> datetime:
    """Start plus `hours` of office time on working days (to the second), in the local zone.

    A start outside office hours begins at the next span; a due time falling exactly on the
    end of a span stays there rather than moving to the next span. hours = 0 returns start.
    """
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not math.isfinite(hours):
        raise DeadlineError(f"Working hours must be a number, not {hours!r}.")
    if not 0 <= hours <= MAX_WORKING_HOURS:
        raise DeadlineError(f"Working hours must be from 0 to {MAX_WORKING_HOURS:g}, not {hours}.")
    office = _office(office)
    local = _local(start, tz)
    if hours == 0:
        return local
    # Whole seconds: float hours (1/3 h) would otherwise leave microsecond crumbs.
    remaining = timedelta(seconds=round(hours * 3600))
    day = local.date()
    clock = datetime.combine(day, local.time()) - datetime.combine(day, time())
    # Bounded by MAX_WORKING_HOURS; a year without a working day cannot happen in the fallback.
    for _ in range(MAX_WORKING_DAYS * 3):
        if is_workday(day):
            for a, b in office.spans:
                begin, end = max(clock, timedelta(minutes=a)), timedelta(minutes=b)
                if begin >= end:
                    continue
                if remaining <= end - begin:
                    wall = datetime.combine(day, time()) + begin + remaining
                    return wall.replace(tzinfo=local.tzinfo)
                remaining -= end - begin
        day, clock = day + timedelta(days=1), timedelta(0)
    raise DeadlineError("No working time found within years: check the office hours.")


# --- durations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Duration:
    """A due time relative to a start: `amount` of `unit` (m, h, wh, wd, d)."""

    amount: float
    unit: str

    def __str__(self) -> str:
        return f"{self.amount:g}{self.unit}"

    @property
    def label_zh(self) -> str:
        n = f"{self.amount:g}"
        return {
            "m": f"{n}分钟",
            "h": f"{n}小时",
            "wh": f"{n}个工作小时",
            "wd": f"{n}个工作日",
            "d": f"{n}天",
        }[self.unit]

    def apply(
        self, start: datetime, office: OfficeHours | str | None = None, *, tz: str | None = None
    ) -> datetime:
        """The due time for `start`, in the local zone (`tz`, else start's own zone).

        Natural time (m, h) is elapsed time; days keep the local time of day.
        """
        local = _local(start, tz)
        if self.unit in ("m", "h"):
            minutes = self.amount * (60 if self.unit == "h" else 1)
            elapsed = timedelta(seconds=round(minutes * 60))
            return (local.astimezone(UTC) + elapsed).astimezone(local.tzinfo)
        if self.unit == "d":
            return add_calendar_days(local, int(self.amount))
        if self.unit == "wd":
            return add_working_days(local, int(self.amount))
        if office is None:
            raise DeadlineError(f"{self} is in working hours: give the office hours.")
        return add_working_hours(local, self.amount, office)


def parse_duration(text: str) -> Duration:
    """A duration spec: "90m", "2h" (natural time), "4wh" (working hours), "1wd", "3d"."""
    if not isinstance(text, str):
        raise DeadlineError(f"Duration {text!r} is not text: {_SPEC_HELP}.")
    match = _SPEC.match(text.strip().lower())
    if not match:
        raise DeadlineError(f"Duration {text!r} is not valid: {_SPEC_HELP}.")
    amount, unit = float(match.group(1)), match.group(2)
    if unit in ("wd", "d") and not amount.is_integer():
        raise DeadlineError(f"Duration {text!r}: {UNITS[unit]} must be whole, e.g. 1{unit}.")
    if amount <= 0:
        raise DeadlineError(f"Duration {text!r} must be more than 0.")
    if amount > MAX_AMOUNT[unit]:
        raise DeadlineError(
            f"Duration {text!r} is too long: at most {MAX_AMOUNT[unit]:g}{unit} ({UNITS[unit]})."
        )
    return Duration(int(amount) if amount.is_integer() else amount, unit)


# --- the SLA table ---------------------------------------------------------------------------


def _level(value: Any) -> str | None:
    return _LEVEL_ALIASES.get(str(value).strip().lower())


def _step(value: Any) -> str | None:
    return _STEP_ALIASES.get(str(value).strip().lower())


def validate_sla(value: Any) -> dict[str, dict[str, str]]:
    """A case template's `deadlines` overrides, checked and normalised (English keys, specs
    written canonically). Shape: {step: {level: spec}}, or {step: spec} for every level; steps
    and levels may be given in Chinese (签收, 特大). Raises DeadlineError with every problem."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DeadlineError(
            'Deadlines must be an object such as {"feedback": {"critical": "2h"}}, '
            f"not {type(value).__name__}."
        )
    problems: list[str] = []
    out: dict[str, dict[str, str]] = {}
    steps_help = ", ".join(f"{k} ({v})" for k, v in STEP_LABELS.items())
    levels_help = ", ".join(f"{k} ({v})" for k, v in LEVELS.items())
    for raw_step, per_level in value.items():
        step = _step(raw_step)
        if step is None:
            problems.append(f"unknown step {raw_step!r}: use {steps_help}")
            continue
        if step in out:
            problems.append(f"step {raw_step!r} is given twice")
            continue
        if isinstance(per_level, str):
            per_level = dict.fromkeys(LEVELS, per_level)
        if not isinstance(per_level, Mapping):
            problems.append(
                f'{step}: give a duration such as "1wd" or levels such as {{"critical": "2h"}}'
            )
            continue
        out[step] = {}
        for raw_level, spec in per_level.items():
            level = _level(raw_level)
            if level is None:
                problems.append(f"{step}: unknown level {raw_level!r}: use {levels_help}")
                continue
            if level in out[step]:
                problems.append(f"{step}: level {raw_level!r} is given twice")
                continue
            try:
                out[step][level] = str(parse_duration(spec))
            except DeadlineError as exc:
                problems.append(f"{step}/{level}: {exc}")
    if problems:
        raise DeadlineError(problems)
    return {step: levels for step, levels in out.items() if levels}


def sla_for(step: str, level: str, overrides: Mapping[str, Any] | None = None) -> Duration:
    """The due time of `step` for a case of `level`: the template's override, else the default."""
    key_step, key_level = _step(step), _level(level)
    problems = []
    if key_step is None:
        problems.append(f"unknown step {step!r}: use one of {', '.join(STEP_LABELS)}")
    if key_level is None:
        problems.append(f"unknown level {level!r}: use one of {', '.join(LEVELS)}")
    if key_step is None or key_level is None:
        raise DeadlineError(problems)
    table = validate_sla(overrides) if overrides else {}
    spec = table.get(key_step, {}).get(key_level) or DEFAULT_SLA[key_step][key_level]
    return parse_duration(spec)


def sla_table(overrides: Mapping[str, Any] | None = None) -> dict[str, dict[str, Duration]]:
    """Every step's due time for every level, overrides applied (for display)."""
    table = validate_sla(overrides) if overrides else {}
    return {
        step: {
            level: parse_duration(table.get(step, {}).get(level) or spec)
            for level, spec in levels.items()
        }
        for step, levels in DEFAULT_SLA.items()
    }


def due_at(
    step: str,
    level: str,
    start: datetime,
    *,
    tz: str,
    office_hours: OfficeHours | str,
    overrides: Mapping[str, Any] | None = None,
) -> datetime:
    """When `step` of a case of `level` started at `start` is due, as an aware UTC datetime."""
    duration = sla_for(step, level, overrides)
    return duration.apply(start, office_hours, tz=tz).astimezone(UTC)
