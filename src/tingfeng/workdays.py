"""Working days and holidays on the Chinese calendar (法定节假日, 调休), from chinese-calendar.

The package carries the State Council's published schedule up to the year of its release.
For a later year it knows nothing, so weekends count as rest days and every weekday as a
working day, and a warning says to update the package (`pip install -U chinesecalendar`).
"""

from __future__ import annotations

import logging
from datetime import date
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import chinese_calendar

log = logging.getLogger(__name__)


@lru_cache(maxsize=16)
def _warn_once(year: int) -> None:
    log.warning(
        "chinese-calendar has no holiday data for %s: weekends count as rest days and every "
        "weekday as a working day. Update it: pip install -U chinesecalendar",
        year,
    )


def is_workday(day: date) -> bool:
    """工作日: a weekday that is not a public holiday, or a weekend day made a working day (调休)."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        _warn_once(day.year)
        return day.weekday() < 5


def is_restday(day: date) -> bool:
    return not is_workday(day)


def holiday_name(day: date) -> str | None:
    """The public holiday `day` belongs to (e.g. "National Day"), if any and if known."""
    try:
        on_holiday, name = chinese_calendar.get_holiday_detail(day)
    except NotImplementedError:
        return None
    return str(name) if on_holiday and name else None


@lru_cache(maxsize=32)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def zone(tz: str) -> ZoneInfo:
    """The time zone named `tz`; ValueError saying what to write when there is none."""
    try:
        return _zone(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"Unknown time zone {tz!r}: use a name such as Asia/Shanghai.") from exc
