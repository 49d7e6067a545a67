"""Source health: healthy, failing, stale, never run or disabled, with the last error in words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select

from tingfeng.db.models import FetchLog, Source

# A source is stale when it has yielded nothing for this many of its usual gaps...
STALE_FACTOR = 3.0
# ...and at least this long, so a source that usually yields every minute is not flagged
# after three quiet minutes at night.
STALE_MIN = timedelta(hours=2)


@dataclass
class SourceHealth:
    id: int
    name: str
    kind: str
    status: str  # healthy | failing | stale | never | disabled | passive
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_item_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    items_last_24h: int
    items_total: int
    next_fetch_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in self.__dict__.items():
            out[key] = value.isoformat() if isinstance(value, datetime) else value
        return out


def status_of(source: Source, now: datetime) -> str:
    from tingfeng.collect.scheduler import PASSIVE_KINDS

    if not source.enabled:
        return "disabled"
    if source.kind in PASSIVE_KINDS:
        return "passive"
    if source.last_attempt_at is None:
        return "never"
    if source.consecutive_failures > 0:
        return "failing"
    if source.typical_gap_s and source.last_item_at is not None:
        quiet = now - source.last_item_at
        if quiet > max(STALE_MIN, timedelta(seconds=STALE_FACTOR * source.typical_gap_s)):
            return "stale"
    return "healthy"


def health_report(conn: Connection, sources: list[Source], now: datetime) -> list[SourceHealth]:
    since = now - timedelta(days=1)
    counts = dict(
        conn.execute(
            select(FetchLog.source_id, func.coalesce(func.sum(FetchLog.items_stored), 0))
            .where(FetchLog.started_at >= since)
            .group_by(FetchLog.source_id)
        ).all()
    )
    return [
        SourceHealth(
            id=s.id,
            name=s.name,
            kind=s.kind,
            status=status_of(s, now),
            last_attempt_at=s.last_attempt_at,
            last_success_at=s.last_success_at,
            last_item_at=s.last_item_at,
            last_error=s.last_error,
            consecutive_failures=s.consecutive_failures,
            items_last_24h=int(counts.get(s.id, 0)),
            items_total=s.items_total,
            next_fetch_at=s.next_fetch_at,
        )
        for s in sources
    ]


def recent_runs(
    conn: Connection, source_id: int, limit: int = 20, offset: int = 0
) -> list[dict[str, object]]:
    """The source's newest runs from the fetch log (and push requests), newest first."""
    rows = conn.execute(
        select(FetchLog.__table__)
        .where(FetchLog.source_id == source_id)
        .order_by(FetchLog.started_at.desc(), FetchLog.id.desc())
        .limit(limit)
        .offset(offset)
    ).mappings()
    out: list[dict[str, object]] = []
    for row in rows:
        run = dict(row)
        started, finished = run.get("started_at"), run.get("finished_at")
        run["seconds"] = (
            round((finished - started).total_seconds(), 1)
            if isinstance(started, datetime) and isinstance(finished, datetime)
            else None
        )
        for key in ("started_at", "finished_at"):
            value = run.get(key)
            run[key] = value.isoformat() if isinstance(value, datetime) else value
        out.append(run)
    return out


def count_runs(conn: Connection, source_id: int) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(FetchLog).where(FetchLog.source_id == source_id)
        ).scalar_one()
    )
