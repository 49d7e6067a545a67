"""What every report shares: its period, its document outline, the data snapshot, numbering.

A report's data is computed by the services the pages use (tingfeng.web.overview's window
queries, tingfeng.events.service, tingfeng.cases.ledger…) and laid out as a `Document`: a title,
the header of an official document, and sections of paragraphs, tables and charts. Every
renderer (HTML, DOCX, XLSX, PDF) renders the same `Document`, so a figure cannot differ
between formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select

from tingfeng.db.models import (
    Alert,
    Case,
    Event,
    Post,
    Report,
    TaxonomyVersion,
    Topic,
)

KINDS: dict[str, str] = {
    "daily": "网络舆情日报告表",
    "weekly": "网络舆情周报",
    "monthly": "网络舆情月报",
    "quarterly": "网络舆情处置工作季通报",
    "special": "网络舆情专报",
    "zero": "网络舆情零报告",
}
FORMATS = ("docx", "pdf", "html", "xlsx")
# Bumped when a report's queries change, so a stored report says which definitions it used.
QUERY_VERSION = "reports-1"
SERIOUS = ("serious", "major", "critical")  # 较大 and above


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC, with the local dates it covers."""

    kind: str
    first: date
    last: date
    start: datetime
    end: datetime
    label: str  # 2026-11-21, 2026-W47, 2026-11, 2026-Q4

    @property
    def until(self) -> datetime:
        """The inclusive end the overview's window queries take."""
        return self.end - timedelta(microseconds=1)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def period_of(kind: str, day: date, tz: str) -> Period:
    """The period of a report of `kind` containing `day` (weekly: Monday to Sunday)."""
    zone = ZoneInfo(tz)
    if kind == "weekly":
        first = day - timedelta(days=day.weekday())
        last = first + timedelta(days=6)
        iso = first.isocalendar()
        label = f"{iso.year}-W{iso.week:02d}"
    elif kind == "monthly":
        first = day.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        label = f"{first:%Y-%m}"
    elif kind == "quarterly":
        q = (day.month - 1) // 3
        first = date(day.year, 3 * q + 1, 1)
        last = (date(day.year, 3 * q + 3, 1) + timedelta(days=32)).replace(day=1) - timedelta(
            days=1
        )
        label = f"{day.year}-Q{q + 1}"
    else:
        first = last = day
        label = day.isoformat()
    return Period(
        kind, first, last, local_midnight(first, zone),
        local_midnight(last + timedelta(days=1), zone), label,
    )  # fmt: skip


def default_day(kind: str, now: datetime, tz: str) -> date:
    """The period a report made at `now` is about: yesterday for a daily report; the last whole
    week, month or quarter for the others."""
    today = now.astimezone(ZoneInfo(tz)).date()
    if kind == "weekly":
        return today - timedelta(days=today.weekday() + 7)
    if kind == "monthly":
        return today.replace(day=1) - timedelta(days=1)
    if kind == "quarterly":
        return period_of("quarterly", today, tz).first - timedelta(days=1)
    return today - timedelta(days=1)


# --- the document outline ---------------------------------------------------------------------


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Any]]
    name: str = ""  # the sheet's name in the XLSX


@dataclass
class Chart:
    kind: str  # line, bar, pie
    title: str
    labels: list[str]
    series: dict[str, list[float]]


@dataclass
class Section:
    heading: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    # Items with a link: (text, url) — key posts and events.
    links: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Document:
    kind: str
    title: str
    period: str
    subtitle: str = ""
    office: str = ""
    number: str = ""
    issued: str = ""  # 2026年11月22日
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # definitions printed at the end
    zero: bool = False
    data: dict[str, Any] = field(default_factory=dict)


def chinese_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def pct(part: float, whole: float) -> str:
    return f"{part * 100.0 / whole:.1f}%" if whole else "—"


def signed(n: int) -> str:
    return f"+{n}" if n > 0 else str(n)


# --- snapshot and numbering -------------------------------------------------------------------


def snapshot(conn: Connection, now: datetime) -> dict[str, Any]:
    """What the report was computed from: the newest post, the row counts, the versions of the
    topics and of the category taxonomy in force, and the version of the report queries."""

    def count(model: Any) -> int:
        return int(conn.execute(select(func.count()).select_from(model)).scalar() or 0)

    taxonomy = conn.execute(
        select(TaxonomyVersion.version).order_by(TaxonomyVersion.id.desc()).limit(1)
    ).scalar()
    return {
        "at": now.astimezone(UTC).isoformat(),
        "max_post_id": conn.execute(select(func.max(Post.id))).scalar(),
        "rows": {
            "posts": count(Post),
            "events": count(Event),
            "alerts": count(Alert),
            "cases": count(Case),
        },
        "topics": {
            str(tid): version
            for tid, version in conn.execute(select(Topic.id, Topic.version).order_by(Topic.id))
        },
        "taxonomy": taxonomy or "builtin",
        "queries": QUERY_VERSION,
    }


def report_number(conn: Connection, kind: str, period: str, year: int) -> str:
    """〔2026〕第12期: the issue of this kind in the year; the same period keeps its number."""
    same = conn.execute(
        select(Report.number)
        .where(Report.kind == kind, Report.period == period)
        .order_by(Report.id)
        .limit(1)
    ).scalar()
    if same:
        return str(same)
    periods = conn.execute(
        select(func.count(func.distinct(Report.period))).where(
            Report.kind == kind, Report.number.like(f"〔{year}〕%")
        )
    ).scalar()
    return f"〔{year}〕第{int(periods or 0) + 1}期"
