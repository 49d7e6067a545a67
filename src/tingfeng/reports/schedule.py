"""Reports made and sent by the clock: the setting `report_schedule`, e.g.
"daily@08:00, weekly@08:30, monthly@09:00".

daily@HH:MM makes yesterday's report every day at that local time — the zero report (零报告)
instead when yesterday was quiet (tingfeng.reports.zero); weekly@ makes last week's on Mondays,
monthly@ last month's on the 1st, quarterly@ last quarter's on the first day of a quarter.
A slot missed while the service was down is made when it comes back the same day; each
(kind, period) is made once (its record, created_by "schedule", is the marker). Each report is
e-mailed as an attachment to `report_email` and announced on the `report_channels`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, select

from tingfeng.db.models import Report
from tingfeng.reports.common import default_day, period_of
from tingfeng.reports.service import Made, ReportError, generate
from tingfeng.settings import Settings

log = logging.getLogger(__name__)
SCHEDULED = ("daily", "weekly", "monthly", "quarterly")
_ENTRY = re.compile(r"^(daily|weekly|monthly|quarterly)@([01]?\d|2[0-3]):([0-5]\d)$")
BY = "schedule"


@dataclass(frozen=True)
class Slot:
    kind: str
    hour: int
    minute: int


def parse_schedule(text: str) -> list[Slot]:
    slots = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        m = _ENTRY.match(part)
        if m is None:
            raise ReportError(
                f"report_schedule: {part!r} is not KIND@HH:MM with KIND one of "
                f"{', '.join(SCHEDULED)} (e.g. daily@08:00)"
            )
        slots.append(Slot(m.group(1), int(m.group(2)), int(m.group(3))))
    return slots


# The schedule set on the reports page (an administrator's), stored in the key-value table;
# it replaces the four settings below while it exists.
STATE = "reports.schedule"
FIELDS = ("report_schedule", "report_format", "report_email", "report_channels")


def stored_schedule(conn: Connection) -> dict[str, str] | None:
    from tingfeng.db.models import DetectorState

    row = conn.execute(select(DetectorState.state).where(DetectorState.name == STATE)).scalar()
    return {k: str(row.get(k) or "") for k in FIELDS} if isinstance(row, dict) else None


def in_force(conn: Connection, settings: Settings) -> Settings:
    """The settings with the page's schedule, when one was saved there."""
    stored = stored_schedule(conn)
    return settings.model_copy(update=stored) if stored else settings


def save_schedule(conn: Connection, actor: Any, values: dict[str, str]) -> dict[str, str]:
    """Check and keep the schedule (ReportError says what is wrong); logged in the audit."""
    from sqlalchemy import insert, update

    from tingfeng import audit
    from tingfeng.db.models import DetectorState
    from tingfeng.reports.common import FORMATS

    clean = {k: str(values.get(k) or "").strip() for k in FIELDS}
    parse_schedule(clean["report_schedule"])
    if clean["report_format"] not in FORMATS:
        raise ReportError(f"report_format: use one of {', '.join(FORMATS)}")
    now = datetime.now(UTC)
    done = conn.execute(
        update(DetectorState).where(DetectorState.name == STATE).values(state=clean, updated_at=now)
    ).rowcount
    if not done:
        conn.execute(insert(DetectorState).values(name=STATE, state=clean, updated_at=now))
    audit.record(conn, actor, "settings.report_schedule", "reports", clean)
    return clean


def _today_is(kind: str, local: datetime) -> bool:
    if kind == "weekly":
        return local.weekday() == 0
    if kind == "monthly":
        return local.day == 1
    if kind == "quarterly":
        return local.day == 1 and local.month in (1, 4, 7, 10)
    return True


def due(engine: Engine, settings: Settings, now: datetime) -> list[tuple[str, Any]]:
    """(kind, day) of the scheduled reports due at `now` and not made yet."""
    tz = settings.default_timezone
    local = now.astimezone(ZoneInfo(tz))
    out = []
    with engine.connect() as conn:
        for slot in parse_schedule(settings.report_schedule):
            if not _today_is(slot.kind, local) or (local.hour, local.minute) < (
                slot.hour, slot.minute,
            ):  # fmt: skip
                continue
            day = default_day(slot.kind, now, tz)
            label = period_of(slot.kind, day, tz).label
            made = conn.execute(
                select(Report.id).where(
                    Report.kind.in_([slot.kind, "zero"] if slot.kind == "daily" else [slot.kind]),
                    Report.period == label,
                    Report.created_by == BY,
                )
            ).first()
            if made is None:
                out.append((slot.kind, day))
    return out


def run_schedule(engine: Engine, settings: Settings, now: datetime) -> list[Made]:
    """Make, store and deliver the reports that are due; a failing one does not stop the rest."""
    with engine.connect() as conn:
        settings = in_force(conn, settings)
    if not settings.report_schedule.strip():
        return []
    from tingfeng.reports.delivery import deliver

    made = []
    for kind, day in due(engine, settings, now):
        try:
            report = generate(settings, engine, kind, settings.report_format, day=day,
                              created_by=BY, now=now)  # fmt: skip
            if kind == "daily" and report.document.data.get("quiet"):
                # Nothing notable: the office files the zero report instead.
                report = generate(settings, engine, "zero", settings.report_format, day=day,
                                  created_by=BY, now=now)  # fmt: skip
        except Exception:
            log.exception("scheduled %s report for %s failed", kind, day)
            continue
        deliver(engine, settings, report)
        made.append(report)
    return made
