"""The duty roster (值班): shifts, rotations on the Chinese calendar, swaps, shift reports.

A shift recurs on every date from `starts_on` whose day kind matches (all days, working days or
rest days on the Chinese calendar, see `tingfeng.workdays`), at a local start time, for some
hours. Its n-th occurrence goes to member n mod len of the rotation of each duty role (A 主班,
B 副班); a swap (换班) overrides one occurrence's person of one role. At its end the person on
duty files a shift report: the notable items and a handover note (交接班记录), or a zero report
(零报告). `missing_reports` lists occurrences whose report is overdue, for the alert clock.

Dates are local dates in the time zone given to each call; instants are aware UTC datetimes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from tingfeng.db.models import (
    Alert,
    Department,
    DutyShift,
    DutySwap,
    Event,
    ShiftReport,
    User,
    utc_now,
)
from tingfeng.office.people import ROLES, canonical_role
from tingfeng.problems import ProblemsError
from tingfeng.workdays import holiday_name, is_workday

DAY_KINDS: dict[str, str] = {"all": "每天", "workdays": "工作日", "restdays": "休息日"}
DUTY_ROLES: dict[str, str] = {"A": "主班", "B": "副班"}
REPORT_KINDS: dict[str, str] = {"notable": "值班报告", "zero": "零报告"}
HOLIDAYS_ZH: dict[str, str] = {
    "New Year's Day": "元旦",
    "Spring Festival": "春节",
    "Tomb-sweeping Day": "清明节",
    "Labour Day": "劳动节",
    "Dragon Boat Festival": "端午节",
    "National Day": "国庆节",
    "Mid-autumn Festival": "中秋节",
    "Anti-Fascist 70th Day": "抗战胜利纪念日",
}
WEEKDAYS_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
DEFAULT_REPORT_TO: dict[str, Any] = {"roles": ["approver"]}
MAX_HOURS = 48.0
# A report may be filed from this long before the shift's end (the last hour is for writing it).
EARLY_FILING = timedelta(hours=1)
MISSING_LOOKBACK = timedelta(days=7)
HANDOVER_LOOKBACK_DAYS = 14
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_SHIFT_FIELDS = {"name", "starts_at", "hours", "days", "rotation", "starts_on", "report_to"}
_ITEM_KEYS = {"text", "alert_id", "event_id"}


class DutyError(ProblemsError):
    """A shift, swap or report was refused; the message says what is wrong and what to do."""

    what = "duty roster input"

    def __init__(self, problems: str | list[str]) -> None:
        super().__init__([problems] if isinstance(problems, str) else problems)


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of a shift: the date it starts on, its instants, who holds each role."""

    shift_id: int
    shift_name: str
    on_date: date
    start: datetime  # aware, UTC
    end: datetime  # aware, UTC
    members: dict[str, int | None]  # duty role ("A", "B") -> user id, after swaps

    def as_dict(self) -> dict[str, Any]:
        return {
            "shift_id": self.shift_id,
            "shift_name": self.shift_name,
            "on_date": self.on_date.isoformat(),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "members": dict(self.members),
        }


@dataclass(frozen=True)
class OnDuty:
    user_id: int
    role: str
    occurrence: Occurrence


# --- the calendar ----------------------------------------------------------------------------


def zone_of(tz: str) -> ZoneInfo:
    from tingfeng.workdays import zone

    try:
        return zone(tz)
    except ValueError as exc:
        raise DutyError(str(exc)) from exc


def day_matches(kind: str, day: date) -> bool:
    """Whether a shift with day kind `kind` occurs on `day`."""
    if kind == "all":
        return True
    return is_workday(day) == (kind == "workdays")


@lru_cache(maxsize=1024)
def _prefix(kind: str, year: int) -> tuple[int, ...]:
    """prefix[i]: how many of the first i days of `year` match `kind` (prefix[-1]: the year)."""
    out, day = [0], date(year, 1, 1)
    while day.year == year:
        out.append(out[-1] + day_matches(kind, day))
        day += timedelta(days=1)
    return tuple(out)


def _before(kind: str, day: date) -> int:
    return _prefix(kind, day.year)[day.timetuple().tm_yday - 1]


def count_matching(kind: str, first: date, until: date) -> int:
    """How many dates in [first, until) match `kind`. Each year is walked once and its running
    counts cached, so counting decades of occurrences costs a few lookups."""
    if until <= first:
        return 0
    if kind == "all":
        return (until - first).days
    whole = sum(_prefix(kind, y)[-1] for y in range(first.year, until.year))
    return whole + _before(kind, until) - _before(kind, first)


def day_info(day: date) -> dict[str, Any]:
    """A date for display: weekday, working day or not, the public holiday in Chinese."""
    name = holiday_name(day)
    return {
        "date": day.isoformat(),
        "weekday": WEEKDAYS_ZH[day.weekday()],
        "workday": is_workday(day),
        "holiday": HOLIDAYS_ZH.get(name, name) if name else None,
    }


# --- validation ------------------------------------------------------------------------------


def _parse_hhmm(value: Any) -> str:
    text = str(value).strip()
    if len(text) == 4 and text[1] == ":":
        text = "0" + text  # "8:00"
    if not _HHMM.match(text):
        raise DutyError(f"Start time {value!r} is not valid: use HH:MM from 00:00 to 23:59.")
    return text


def _parse_hours(value: Any) -> float:
    try:
        hours = float(value)
    except (TypeError, ValueError):
        raise DutyError(f"Hours {value!r} is not a number.") from None
    if not 0 < hours <= MAX_HOURS:
        raise DutyError(f"A shift lasts more than 0 and at most {MAX_HOURS:g} hours, not {value}.")
    return hours


def _parse_days(value: Any) -> str:
    if value not in DAY_KINDS:
        raise DutyError(f"Unknown day kind {value!r}: use one of {', '.join(DAY_KINDS)}.")
    return str(value)


def parse_date(value: Any, what: str = "date") -> date:
    if isinstance(value, datetime):
        raise DutyError(f"The {what} must be a date (YYYY-MM-DD), not a date and time.")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise DutyError(f"The {what} {value!r} is not a date: use YYYY-MM-DD.") from None


def _known_users(conn: Connection, ids: Iterable[int]) -> dict[int, bool]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = conn.execute(select(User.id, User.active).where(User.id.in_(wanted))).all()
    return {int(r.id): bool(r.active) for r in rows}


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _parse_rotation(conn: Connection, value: Any) -> dict[str, list[int]]:
    if not isinstance(value, Mapping) or not value:
        raise DutyError('A rotation is needed: {"A": [user ids], "B": [user ids]} (B optional).')
    problems: list[str] = []
    out: dict[str, list[int]] = {}
    for role, ids in value.items():
        if role not in DUTY_ROLES:
            problems.append(f"Unknown duty role {role!r}: use A (主班) or B (副班).")
            continue
        if not isinstance(ids, list | tuple) or not all(_is_id(i) for i in ids):
            problems.append(f"The rotation of role {role} must be a list of user ids.")
            continue
        if ids:
            out[role] = [int(i) for i in ids]
    if not problems and "A" not in out:
        problems.append("The rotation of role A (主班) is empty: name at least one person.")
    known = _known_users(conn, (i for ids in out.values() for i in ids))
    unknown = sorted({i for ids in out.values() for i in ids if i not in known})
    if unknown:
        problems.append(
            f"No user with id {', '.join(map(str, unknown))}: see `tingfeng people list`."
        )
    inactive = sorted({i for ids in out.values() for i in ids if known.get(i) is False})
    if inactive:
        problems.append(f"User {', '.join(map(str, inactive))} is inactive and cannot be on duty.")
    if problems:
        raise DutyError(problems)
    return out


def _parse_report_to(conn: Connection, value: Any) -> dict[str, Any]:
    if value is None:
        return dict(DEFAULT_REPORT_TO)
    if not isinstance(value, Mapping):
        raise DutyError(
            'report_to must be like {"user_ids": [...], "roles": [...], "department_ids": [...], '
            '"on_duty": true}.'
        )
    allowed = {"user_ids", "roles", "department_ids", "on_duty"}
    problems = [
        f"Unknown report_to key {k!r}: use {', '.join(sorted(allowed))}."
        for k in value
        if k not in allowed
    ]
    out: dict[str, Any] = {}
    for key in ("user_ids", "department_ids"):
        ids = value.get(key, [])
        if not isinstance(ids, list | tuple) or not all(_is_id(i) for i in ids):
            problems.append(f"report_to.{key} must be a list of ids.")
        elif ids:
            out[key] = [int(i) for i in ids]
    roles = value.get("roles", [])
    if not isinstance(roles, list | tuple) or any(canonical_role(str(r)) is None for r in roles):
        problems.append(f"report_to.roles must be a list of roles from: {', '.join(ROLES)}.")
    elif roles:
        out["roles"] = [canonical_role(str(r)) for r in roles]
    if "on_duty" in value:
        if not isinstance(value["on_duty"], bool):
            problems.append("report_to.on_duty must be true or false.")
        elif value["on_duty"]:
            out["on_duty"] = True
    unknown = sorted(
        set(out.get("user_ids", [])) - set(_known_users(conn, out.get("user_ids", [])))
    )
    if unknown:
        problems.append(f"report_to: no user with id {', '.join(map(str, unknown))}.")
    if out.get("department_ids"):
        found = set(
            conn.execute(
                select(Department.id).where(Department.id.in_(out["department_ids"]))
            ).scalars()
        )
        missing = sorted(set(out["department_ids"]) - found)
        if missing:
            problems.append(f"report_to: no department with id {', '.join(map(str, missing))}.")
    if not problems and not out:
        problems.append("report_to names nobody: give user_ids, roles, department_ids or on_duty.")
    if problems:
        raise DutyError(problems)
    return out


def _parse_name(conn: Connection, value: Any, shift_id: int | None = None) -> str:
    name = str(value or "").strip()
    if not name or len(name) > 100:
        raise DutyError("A shift needs a name of 1 to 100 characters (e.g. 白班, 夜班).")
    if name.isdigit():
        raise DutyError(f"A shift name cannot be only digits ({name!r}): it would read as an id.")
    row = conn.execute(select(DutyShift.id).where(DutyShift.name == name)).first()
    if row is not None and row[0] != shift_id:
        raise DutyError(f"There is already a shift named {name!r}.")
    return name


# --- shifts ----------------------------------------------------------------------------------


def add_shift(
    conn: Connection,
    name: str,
    starts_at: str,
    hours: float,
    *,
    days: str = "all",
    rotation: Mapping[str, list[int]],
    starts_on: date | str,
    report_to: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> int:
    """Add a recurring shift; `now` (default: the clock) is its creation time, before which no
    report is expected."""
    values = {
        "name": _parse_name(conn, name),
        "starts_at": _parse_hhmm(starts_at),
        "hours": _parse_hours(hours),
        "days": _parse_days(days),
        "rotation": _parse_rotation(conn, rotation),
        "starts_on": parse_date(starts_on, "first date").isoformat(),
        "report_to": _parse_report_to(conn, report_to),
        "active": True,
        "created_at": now or utc_now(),
    }
    return int(conn.execute(insert(DutyShift).values(**values)).inserted_primary_key[0])


def update_shift(conn: Connection, shift_id: int, **values: Any) -> None:
    """Change a shift. A new rotation or first date re-deals every occurrence, past ones too
    (swaps stay); to change hands from a date on, end this shift and add another."""
    _shift_row(conn, shift_id)
    unknown = set(values) - _SHIFT_FIELDS - {"active"}
    if unknown:
        raise DutyError(
            f"Cannot change {', '.join(sorted(unknown))} of a shift: "
            f"use {', '.join(sorted(_SHIFT_FIELDS | {'active'}))}."
        )
    parsers: dict[str, Any] = {
        "name": lambda v: _parse_name(conn, v, shift_id),
        "starts_at": _parse_hhmm,
        "hours": _parse_hours,
        "days": _parse_days,
        "rotation": lambda v: _parse_rotation(conn, v),
        "starts_on": lambda v: parse_date(v, "first date").isoformat(),
        "report_to": lambda v: _parse_report_to(conn, v),
        "active": lambda v: _parse_active(v),
    }
    parsed = {key: parsers[key](value) for key, value in values.items()}
    if parsed:
        conn.execute(update(DutyShift).where(DutyShift.id == shift_id).values(**parsed))


def _parse_active(value: Any) -> bool:
    if not isinstance(value, bool):
        raise DutyError("active must be true or false.")
    return value


def remove_shift(conn: Connection, shift_id: int) -> None:
    """Remove a shift with its swaps and reports (to keep the history, set active=False)."""
    _shift_row(conn, shift_id)
    conn.execute(delete(DutySwap).where(DutySwap.shift_id == shift_id))
    conn.execute(delete(ShiftReport).where(ShiftReport.shift_id == shift_id))
    conn.execute(delete(DutyShift).where(DutyShift.id == shift_id))


def _shift_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "starts_at": row.starts_at,
        "hours": row.hours,
        "days": row.days,
        "rotation": row.rotation,
        "starts_on": row.starts_on,
        "report_to": row.report_to,
        "active": row.active,
        "created_at": row.created_at.isoformat() if row.created_at else None,
    }


def list_shifts(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(DutyShift).order_by(DutyShift.starts_at, DutyShift.id)).all()
    return [_shift_dict(r) for r in rows]


def get_shift(conn: Connection, shift_id: int) -> dict[str, Any]:
    return _shift_dict(_shift_row(conn, shift_id))


def _shift_row(conn: Connection, shift_id: int) -> Any:
    row = conn.execute(select(DutyShift).where(DutyShift.id == shift_id)).first()
    if row is None:
        raise DutyError(f"No shift with id {shift_id}: see `tingfeng duty shifts`.")
    return row


def find_shift(conn: Connection, ref: str | int) -> int:
    """A shift by id or name."""
    text = str(ref).strip()
    q = select(DutyShift.id)
    row = conn.execute(
        q.where(DutyShift.id == int(text)) if text.isdigit() else q.where(DutyShift.name == text)
    ).first()
    if row is None:
        raise DutyError(f"No shift {text!r}: see `tingfeng duty shifts`.")
    return int(row[0])


# --- occurrences -----------------------------------------------------------------------------


def _start_of(row: Any, day: date, zone: ZoneInfo) -> datetime:
    hh, mm = (int(p) for p in row.starts_at.split(":"))
    return datetime.combine(day, time(hh, mm), zone).astimezone(UTC)


def _deal(row: Any, n: int) -> dict[str, int | None]:
    rotation: dict[str, list[int]] = row.rotation or {}
    out: dict[str, int | None] = {}
    for role in DUTY_ROLES:
        ids = rotation.get(role) or []
        out[role] = ids[n % len(ids)] if ids else None
    return out


def _walk(
    row: Any, first: date, last: date, zone: ZoneInfo, swaps: Mapping[tuple[int, str, str], int]
) -> Iterator[Occurrence]:
    """The shift's occurrences starting on dates first..last, counting from its first date."""
    starts_on = date.fromisoformat(row.starts_on)
    day = max(first, starts_on)
    n = count_matching(row.days, starts_on, day)
    while day <= last:
        if day_matches(row.days, day):
            members = _deal(row, n)
            for role in members:
                swapped = swaps.get((row.id, day.isoformat(), role))
                if swapped is not None:
                    members[role] = swapped
            start = _start_of(row, day, zone)
            yield Occurrence(
                row.id, row.name, day, start, start + timedelta(hours=row.hours), members
            )
            n += 1
        day += timedelta(days=1)


def _swaps(
    conn: Connection, shift_ids: list[int], first: date, last: date
) -> dict[tuple[int, str, str], int]:
    if not shift_ids:
        return {}
    rows = conn.execute(
        select(DutySwap.shift_id, DutySwap.on_date, DutySwap.role, DutySwap.user_id).where(
            DutySwap.shift_id.in_(shift_ids),
            DutySwap.on_date >= first.isoformat(),
            DutySwap.on_date <= last.isoformat(),
        )
    ).all()
    return {(r.shift_id, r.on_date, r.role): r.user_id for r in rows}


def _active_shifts(conn: Connection) -> list[Any]:
    return list(
        conn.execute(select(DutyShift).where(DutyShift.active.is_(True)).order_by(DutyShift.id))
    )


def _by_dates(
    conn: Connection, shifts: list[Any], first: date, last: date, zone: ZoneInfo
) -> Iterator[Occurrence]:
    swaps = _swaps(conn, [s.id for s in shifts], first, last)
    for row in shifts:
        yield from _walk(row, first, last, zone, swaps)


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise DutyError(f"The {what} must carry a time zone (an aware datetime).")
    return value.astimezone(UTC)


def occurrences(conn: Connection, start: datetime, end: datetime, tz: str) -> list[Occurrence]:
    """Occurrences of the active shifts that overlap [start, end), in order of start."""
    zone = zone_of(tz)
    start, end = _aware(start, "start"), _aware(end, "end")
    # An occurrence starting up to MAX_HOURS before `start` may still be running.
    first = (start - timedelta(hours=MAX_HOURS)).astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date()
    found = [
        occ
        for occ in _by_dates(conn, _active_shifts(conn), first, last, zone)
        if occ.start < end and occ.end > start
    ]
    return sorted(found, key=lambda o: (o.start, o.shift_id))


def on_duty(conn: Connection, at: datetime, tz: str) -> list[OnDuty]:
    """Who is on watch at `at`: one entry per person and role of every running occurrence."""
    at = _aware(at, "time")
    out = [
        OnDuty(user_id, role, occ)
        for occ in occurrences(conn, at, at + timedelta(microseconds=1), tz)
        for role, user_id in occ.members.items()
        if user_id is not None
    ]
    return sorted(out, key=lambda d: (d.role, d.occurrence.start, d.occurrence.shift_id))


def occurrence_of(conn: Connection, shift_id: int, on_date: date | str, tz: str) -> Occurrence:
    """The occurrence of a shift that starts on `on_date`; an error if it does not occur then."""
    row = _shift_row(conn, shift_id)
    day = parse_date(on_date)
    starts_on = date.fromisoformat(row.starts_on)
    if day < starts_on:
        raise DutyError(
            f"Shift {row.name} starts on {row.starts_on}; it has no occurrence on {day}."
        )
    if not day_matches(row.days, day):
        kind = "a working day" if is_workday(day) else "a rest day"
        raise DutyError(
            f"Shift {row.name} runs on {row.days} only and {day} is {kind}: it does not occur then."
        )
    return next(_walk(row, day, day, zone_of(tz), _swaps(conn, [row.id], day, day)))


# --- swaps -----------------------------------------------------------------------------------


def swap(
    conn: Connection,
    shift_id: int,
    on_date: date,
    role: str,
    user_id: int,
    *,
    reason: str | None = None,
    by: str | None = None,
) -> None:
    """换班: `user_id` takes role `role` of the occurrence on `on_date` (replacing any earlier
    swap of it); swapping back to the rotation's own person removes the swap."""
    row = _shift_row(conn, shift_id)
    if role not in DUTY_ROLES:
        raise DutyError(f"Unknown duty role {role!r}: use A (主班) or B (副班).")
    if not (row.rotation or {}).get(role):
        raise DutyError(f"Shift {row.name} has no role {role} in its rotation.")
    known = _known_users(conn, [user_id]) if _is_id(user_id) else {}
    if user_id not in known:
        raise DutyError(f"No user with id {user_id}: see `tingfeng people list`.")
    if not known[user_id]:
        raise DutyError(f"User {user_id} is inactive and cannot be on duty.")
    day = parse_date(on_date)
    # Who holds which role does not depend on the time zone; only the instants would.
    occ = occurrence_of(conn, shift_id, day, "UTC")
    for other, holder in occ.members.items():
        if other != role and holder == user_id:
            raise DutyError(
                f"User {user_id} already holds role {other} of {row.name} on {day}: "
                "swap that role too, or pick someone else."
            )
    scheduled = _deal(row, count_matching(row.days, date.fromisoformat(row.starts_on), day))[role]
    where = (
        DutySwap.shift_id == shift_id,
        DutySwap.on_date == day.isoformat(),
        DutySwap.role == role,
    )
    conn.execute(delete(DutySwap).where(*where))
    if user_id == scheduled:
        return
    try:
        with conn.begin_nested():
            conn.execute(
                insert(DutySwap).values(
                    shift_id=shift_id,
                    on_date=day.isoformat(),
                    role=role,
                    user_id=user_id,
                    replaces_user_id=scheduled,
                    reason=(reason or "").strip() or None,
                    created_by=by,
                    created_at=utc_now(),
                )
            )
    except IntegrityError:  # a concurrent swap of the same occurrence and role won
        raise DutyError(
            f"Someone else swapped role {role} of {row.name} on {day} at the same moment: "
            "look at the roster and try again."
        ) from None


# --- shift reports ---------------------------------------------------------------------------


def _parse_items(conn: Connection, items: Iterable[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    problems: list[str] = []
    for i, item in enumerate(items, 1):
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, Mapping):
            problems.append(f"Item {i} must be a text or {{'text': ..., 'event_id': ...}}.")
            continue
        extra = set(item) - _ITEM_KEYS
        text = item.get("text")
        if extra:
            problems.append(f"Item {i}: unknown key {', '.join(sorted(map(str, extra)))}.")
        if not isinstance(text, str) or not text.strip():
            problems.append(f"Item {i} has no text.")
            continue
        clean: dict[str, Any] = {"text": text.strip()}
        for key in ("alert_id", "event_id"):
            if item.get(key) is not None:
                if not _is_id(item[key]):
                    problems.append(f"Item {i}: {key} must be a positive integer.")
                else:
                    clean[key] = int(item[key])
        out.append(clean)
    for key, model in (("alert_id", Alert), ("event_id", Event)):
        ids = {it[key] for it in out if key in it}
        if ids:
            found = set(conn.execute(select(model.id).where(model.id.in_(ids))).scalars())
            for missing in sorted(ids - found):
                problems.append(f"No {key.removesuffix('_id')} with id {missing}.")
    if problems:
        raise DutyError(problems)
    return out


def file_report(
    conn: Connection,
    shift_id: int,
    on_date: date,
    *,
    kind: str,
    items: Iterable[Any] = (),
    handover: str = "",
    user_id: int | None = None,
    now: datetime,
    tz: str,
    replace: bool = False,
) -> int:
    """File the report of one occurrence: "notable" with items, or "zero" (零报告) with none;
    a handover note for the next shift either way. Returns the report's id."""
    if kind not in REPORT_KINDS:
        raise DutyError(f"Unknown report kind {kind!r}: use notable (值班报告) or zero (零报告).")
    now = _aware(now, "filing time")
    occ = occurrence_of(conn, shift_id, on_date, tz)
    zone = zone_of(tz)
    opens = max(occ.start, occ.end - EARLY_FILING)
    if now < opens:
        state = "has not started" if now < occ.start else "is still running"
        raise DutyError(
            f"Shift {occ.shift_name} of {occ.on_date} {state}: its report can be filed from "
            f"{opens.astimezone(zone):%Y-%m-%d %H:%M} (it ends {occ.end.astimezone(zone):%H:%M})."
        )
    parsed = _parse_items(conn, items)
    if kind == "zero" and parsed:
        raise DutyError(
            "A zero report (零报告) says nothing notable happened, so it has no items: "
            "file a notable report instead, or drop the items."
        )
    if kind == "notable" and not parsed:
        raise DutyError(
            "A notable report needs at least one item; if nothing happened, file a zero report."
        )
    if user_id is not None and user_id not in _known_users(
        conn, [user_id] if _is_id(user_id) else []
    ):
        raise DutyError(f"No user with id {user_id}: see `tingfeng people list`.")
    values = {
        "kind": kind,
        "items": parsed,
        "handover": (handover or "").strip(),
        "user_id": user_id,
        "filed_at": now,
    }
    where = (ShiftReport.shift_id == shift_id, ShiftReport.on_date == occ.on_date.isoformat())
    existing = conn.execute(select(ShiftReport.id, ShiftReport.filed_at).where(*where)).first()
    if existing is not None:
        if not replace:
            raise _duplicate(occ, existing.filed_at, zone)
        conn.execute(update(ShiftReport).where(ShiftReport.id == existing.id).values(**values))
        return int(existing.id)
    try:
        with conn.begin_nested():
            return int(
                conn.execute(
                    insert(ShiftReport).values(
                        shift_id=shift_id, on_date=occ.on_date.isoformat(), **values
                    )
                ).inserted_primary_key[0]
            )
    except IntegrityError:  # someone filed the same occurrence a moment ago
        raise _duplicate(occ, None, zone) from None


def _duplicate(occ: Occurrence, filed_at: datetime | None, zone: ZoneInfo) -> DutyError:
    when = f" at {filed_at.astimezone(zone):%Y-%m-%d %H:%M}" if filed_at else ""
    return DutyError(
        f"The report of shift {occ.shift_name} on {occ.on_date} was already filed{when}: "
        "to correct it, file again with replace (CLI --replace)."
    )


def get_report(conn: Connection, shift_id: int, on_date: date | str) -> dict[str, Any] | None:
    row = conn.execute(
        select(ShiftReport).where(
            ShiftReport.shift_id == shift_id,
            ShiftReport.on_date == parse_date(on_date).isoformat(),
        )
    ).first()
    return _report_dict(row) if row is not None else None


def _report_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "shift_id": row.shift_id,
        "on_date": row.on_date,
        "kind": row.kind,
        "items": row.items,
        "handover": row.handover,
        "user_id": row.user_id,
        "filed_at": row.filed_at.isoformat(),
    }


def missing_reports(
    conn: Connection, now: datetime, tz: str, grace_minutes: int
) -> list[Occurrence]:
    """Occurrences of active shifts that ended at least `grace_minutes` before `now`, within the
    last 7 days, that started after the shift was created, and have no report. A pure query:
    the caller raises the alert and de-duplicates on (shift_id, on_date)."""
    zone = zone_of(tz)
    now = _aware(now, "time")
    due = now - timedelta(minutes=max(0, grace_minutes))
    oldest = now - MISSING_LOOKBACK
    shifts = _active_shifts(conn)
    created = {s.id: s.created_at for s in shifts}
    first = (oldest - timedelta(hours=MAX_HOURS)).astimezone(zone).date() - timedelta(days=1)
    last = due.astimezone(zone).date()
    candidates = [
        occ
        for occ in _by_dates(conn, shifts, first, last, zone)
        if oldest <= occ.end <= due and occ.start >= created[occ.shift_id]
    ]
    if not candidates:
        return []
    rows = conn.execute(
        select(ShiftReport.shift_id, ShiftReport.on_date).where(
            ShiftReport.on_date >= first.isoformat(), ShiftReport.on_date <= last.isoformat()
        )
    ).all()
    filed = {(r.shift_id, r.on_date) for r in rows}
    missing = [o for o in candidates if (o.shift_id, o.on_date.isoformat()) not in filed]
    return sorted(missing, key=lambda o: (o.end, o.shift_id))


def handover_for(conn: Connection, at: datetime, tz: str) -> list[dict[str, Any]]:
    """What the incoming person reads at `at`: for each active shift, the report of its latest
    occurrence that ended by `at` and has one (within two weeks), newest first."""
    zone = zone_of(tz)
    at = _aware(at, "time")
    shifts = {s.id: s for s in _active_shifts(conn)}
    if not shifts:
        return []
    oldest = at.astimezone(zone).date() - timedelta(days=HANDOVER_LOOKBACK_DAYS)
    rows = conn.execute(
        select(ShiftReport)
        .where(ShiftReport.shift_id.in_(shifts), ShiftReport.on_date >= oldest.isoformat())
        .order_by(ShiftReport.on_date.desc())
    ).all()
    latest: dict[int, tuple[datetime, Any]] = {}
    for r in rows:
        shift = shifts[r.shift_id]
        end = _start_of(shift, date.fromisoformat(r.on_date), zone) + timedelta(hours=shift.hours)
        if end <= at and (r.shift_id not in latest or end > latest[r.shift_id][0]):
            latest[r.shift_id] = (end, r)
    names = _names(conn, [r.user_id for _, r in latest.values() if r.user_id])
    out = [
        {
            **_report_dict(r),
            "shift_name": shifts[r.shift_id].name,
            "end": end.isoformat(),
            "user_name": names.get(r.user_id) if r.user_id else None,
        }
        for end, r in latest.values()
    ]
    return sorted(out, key=lambda d: d["end"], reverse=True)


# --- display ---------------------------------------------------------------------------------


def _names(conn: Connection, ids: Iterable[int]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = conn.execute(select(User.id, User.display_name).where(User.id.in_(wanted))).all()
    return {int(r.id): str(r.display_name) for r in rows}


def roster(conn: Connection, start: date, days: int, tz: str) -> list[dict[str, Any]]:
    """The roster of `days` dates from `start`: per date its kind and holiday, per shift that
    occurs on it the people of each role (after swaps) and whether its report is filed."""
    if not 1 <= days <= 366:
        raise DutyError(f"Show 1 to 366 days of the roster, not {days}.")
    zone = zone_of(tz)
    first = parse_date(start)
    last = first + timedelta(days=days - 1)
    shifts = _active_shifts(conn)
    occs = list(_by_dates(conn, shifts, first, last, zone))
    swapped = set(_swaps(conn, [s.id for s in shifts], first, last))
    rows = conn.execute(
        select(ShiftReport.shift_id, ShiftReport.on_date, ShiftReport.kind).where(
            ShiftReport.on_date >= first.isoformat(), ShiftReport.on_date <= last.isoformat()
        )
    ).all()
    reports = {(r.shift_id, r.on_date): r.kind for r in rows}
    names = _names(conn, (u for o in occs for u in o.members.values() if u is not None))
    by_day: dict[date, list[dict[str, Any]]] = {}
    for occ in sorted(occs, key=lambda o: (o.start, o.shift_id)):
        key = occ.on_date.isoformat()
        by_day.setdefault(occ.on_date, []).append(
            {
                "shift_id": occ.shift_id,
                "name": occ.shift_name,
                "start": occ.start.astimezone(zone).isoformat(),
                "end": occ.end.astimezone(zone).isoformat(),
                "members": {
                    role: {
                        "user_id": uid,
                        "name": names.get(uid) if uid is not None else None,
                        "swapped": (occ.shift_id, key, role) in swapped,
                    }
                    for role, uid in occ.members.items()
                    if uid is not None
                },
                "report": reports.get((occ.shift_id, key)),
            }
        )
    out = []
    for i in range(days):
        day = first + timedelta(days=i)
        out.append({**day_info(day), "shifts": by_day.get(day, [])})
    return out
