"""态势总览: today's volume, the hourly trend, mixes, hot events, open alerts and cases.

`summary` is pure data (one read connection, a fixed number of bounded queries); `register`
adds the JSON API and the page (with a wall-screen mode, 大屏). Every post query is a range on
`ix_posts_published`; posts without `published_at` are read through the same index's NULL
entries and bounded by `fetched_at`, so the cost follows the posts of the last two days, never
the whole table. The posts' part (`post_statistics`) is the same for everyone and the costly
one, so the routes share one computation for up to STATISTICS_TTL_S (`SharedStatistics`).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection, Integer, and_, case, cast, func, select, union_all
from sqlalchemy.sql import Subquery

from tingfeng.cases.permissions import scope_of
from tingfeng.cases.service import STEP_LABELS, level_zh
from tingfeng.cases.states import OPEN_STATES, STATES
from tingfeng.db.models import (
    Alert,
    Case,
    CaseDeadline,
    Event,
    Post,
    PostLabel,
    PostReading,
    Source,
    as_utc,
)
from tingfeng.office.people import Person
from tingfeng.settings import Settings
from tingfeng.web.guard import require_user
from tingfeng.web.labels import EMOTION_ZH, POLARITY_ZH, label_map

TOP_SOURCES = 8
TOP_REGIONS = 8
TOP_EVENTS = 10
TOP_ALERTS = 10
TOP_CASES = 10
log = logging.getLogger(__name__)
# How old the posts' numbers of the overview may be (SharedStatistics): the page reloads them
# every 10 s, so a person never sees more than one reload's delay.
STATISTICS_TTL_S = 5.0


def _posts_between(start: datetime, end: datetime) -> Subquery:
    """Posts whose time (published_at, else fetched_at) is in [start, end]: (id, source_id, t).

    Two index-friendly arms instead of a range on coalesce(), which no index can serve.
    """
    p = Post.__table__
    dated = select(p.c.id, p.c.source_id, p.c.published_at.label("t")).where(
        p.c.published_at >= start, p.c.published_at <= end
    )
    undated = select(p.c.id, p.c.source_id, p.c.fetched_at.label("t")).where(
        p.c.published_at.is_(None), p.c.fetched_at >= start, p.c.fetched_at <= end
    )
    return union_all(dated, undated).subquery("w")


def _count(conn: Connection, start: datetime, end: datetime) -> int:
    w = _posts_between(start, end)
    return int(conn.execute(select(func.count()).select_from(w)).scalar() or 0)


def _hour_index(conn: Connection, column: Any, start: datetime) -> Any:
    """SQL for the whole hours from `start` to `column` (both UTC), per dialect."""
    base = int(start.timestamp())
    if conn.dialect.name == "sqlite":
        # Stored as naive UTC text; strftime('%s') reads it as UTC seconds, exactly.
        seconds = cast(func.strftime("%s", column), Integer)
        return (seconds - base) // 3600
    return cast(func.floor((func.extract("epoch", column) - base) / 3600), Integer)


def _hourly(conn: Connection, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    local_hour = now.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    start = (local_hour - timedelta(hours=23)).astimezone(UTC)
    w = _posts_between(start, now)
    r = PostReading.__table__
    bucket = _hour_index(conn, w.c.t, start).label("b")
    rows = conn.execute(
        select(
            bucket,
            func.count(),
            func.sum(case((r.c.polarity == "negative", 1), else_=0)),
        )
        .select_from(w.outerjoin(r, r.c.post_id == w.c.id))
        .group_by(bucket)
    ).all()
    total = [0] * 24
    negative = [0] * 24
    for b, n, neg in rows:
        if b is not None and 0 <= int(b) < 24:
            total[int(b)] += int(n)
            negative[int(b)] += int(neg or 0)
    hours = [(start + timedelta(hours=i)).astimezone(zone) for i in range(24)]
    return {
        "hours": [h.isoformat() for h in hours],
        "labels": [h.strftime("%H时") for h in hours],
        "total": total,
        "negative": negative,
    }


def _mixes(conn: Connection, w: Subquery) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    r = PostReading.__table__
    rows = conn.execute(
        select(r.c.polarity, r.c.emotion, func.count())
        .select_from(w.join(r, r.c.post_id == w.c.id))
        .group_by(r.c.polarity, r.c.emotion)
    ).all()
    polarity: dict[str, int] = {}
    emotion: dict[str, int] = {}
    for pol, emo, n in rows:
        polarity[pol] = polarity.get(pol, 0) + int(n)
        emotion[emo] = emotion.get(emo, 0) + int(n)

    def listed(counts: dict[str, int], names: dict[str, str]) -> list[dict[str, Any]]:
        return [
            {"label": k, "label_zh": names.get(k, k), "count": n}
            for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    return listed(polarity, POLARITY_ZH), listed(emotion, EMOTION_ZH)


def _top_sources(conn: Connection, w: Subquery) -> list[dict[str, Any]]:
    n = func.count().label("n")
    top = (
        select(w.c.source_id, n)
        .group_by(w.c.source_id)
        .order_by(n.desc(), w.c.source_id)
        .limit(TOP_SOURCES)
    ).subquery("top")
    s = Source.__table__
    rows = conn.execute(
        select(top.c.source_id, s.c.name, top.c.n)
        .select_from(top.outerjoin(s, s.c.id == top.c.source_id))
        .order_by(top.c.n.desc(), top.c.source_id)
    ).all()
    return [{"id": sid, "name": name or f"#{sid}", "count": int(c)} for sid, name, c in rows]


def _top_regions(conn: Connection, w: Subquery) -> list[dict[str, Any]]:
    from tingfeng.analyze.regions import default_table

    lab = PostLabel.__table__
    n = func.count().label("n")
    rows = conn.execute(
        select(lab.c.value, n)
        .select_from(w.join(lab, and_(lab.c.post_id == w.c.id, lab.c.kind == "region")))
        .group_by(lab.c.value)
        .order_by(n.desc(), lab.c.value)
        .limit(TOP_REGIONS)
    ).all()
    table = default_table()
    out = []
    for code, count in rows:
        division = table.get(code)
        out.append(
            {
                "code": code,
                "name": division.name if division else code,
                "path": "".join(division.path) if division else code,
                "level": division.level if division else None,
                "count": int(count),
            }
        )
    return out


def _hot_events(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    e = Event.__table__
    rows = conn.execute(
        select(e.c.id, e.c.title, e.c.level, e.c.heat, e.c.posts, e.c.last_seen_at)
        .where(e.c.last_seen_at >= now - timedelta(hours=24), e.c.status == "open")
        .order_by(func.coalesce(e.c.heat, -1.0).desc(), e.c.id.desc())
        .limit(TOP_EVENTS)
    ).all()
    return [
        {
            "id": r.id,
            "title": r.title,
            "level": r.level or "general",
            "level_zh": level_zh(r.level),
            "heat": round(r.heat, 1) if r.heat is not None else None,
            "posts": r.posts,
            "last_seen_at": r.last_seen_at.isoformat() if r.last_seen_at else None,
        }
        for r in rows
    ]


def _open_alerts(conn: Connection) -> dict[str, Any]:
    a = Alert.__table__
    count = conn.execute(select(func.count()).where(a.c.status == "open")).scalar() or 0
    rows = conn.execute(
        select(a.c.id, a.c.level, a.c.title, a.c.created_at)
        .where(a.c.status == "open")
        .order_by(a.c.created_at.desc(), a.c.id.desc())
        .limit(TOP_ALERTS)
    ).all()
    return {
        "count": int(count),
        "newest": [
            {
                "id": r.id,
                "level": r.level,
                "level_zh": level_zh(r.level),
                "title": r.title,
                "created_at": r.created_at.isoformat(),
            }
            for r in rows
        ],
    }


def _open_cases(conn: Connection, person: Person, now: datetime) -> dict[str, Any]:
    c = Case.__table__
    d = CaseDeadline.__table__
    visible = c.c.state.in_(sorted(OPEN_STATES))
    clause = scope_of(conn, person).where()
    if clause is not None:
        visible = and_(visible, clause)
    count = conn.execute(select(func.count()).select_from(c).where(visible)).scalar() or 0
    nxt = (
        select(d.c.case_id, func.min(d.c.due_at).label("due_at"))
        .where(d.c.status == "open")
        .group_by(d.c.case_id)
    ).subquery("nxt")
    # Cases without an open deadline come last (a NULL sorts first on SQLite, last on PG).
    rows = conn.execute(
        select(c.c.id, c.c.number, c.c.title, c.c.level, c.c.state, nxt.c.due_at)
        .select_from(c.outerjoin(nxt, nxt.c.case_id == c.c.id))
        .where(visible)
        .order_by(case((nxt.c.due_at.is_(None), 1), else_=0), nxt.c.due_at, c.c.id)
        .limit(TOP_CASES)
    ).all()
    due_ids = [r.id for r in rows if r.due_at is not None]
    steps: dict[tuple[int, Any], str] = {}
    if due_ids:
        for cid, step, due in conn.execute(
            select(d.c.case_id, d.c.step, d.c.due_at).where(
                d.c.case_id.in_(due_ids), d.c.status == "open"
            )
        ).all():
            steps.setdefault((cid, due), step)
    out = []
    for r in rows:
        due = _aware(r.due_at)
        step = steps.get((r.id, r.due_at)) if due else None
        out.append(
            {
                "id": r.id,
                "number": r.number,
                "title": r.title,
                "level": r.level,
                "level_zh": level_zh(r.level),
                "state": r.state,
                "state_zh": STATES.get(r.state, r.state),
                "step": step,
                "step_zh": STEP_LABELS.get(step, step) if step else None,
                "due_at": due.isoformat() if due else None,
                "seconds_left": int((due - now).total_seconds()) if due else None,
            }
        )
    return {"count": int(count), "next": out}


def _aware(value: Any) -> datetime | None:
    # Defensive: an aggregate may come back raw (text or naive) on SQLite.
    return as_utc(value)


def summary(
    conn: Connection,
    person: Person,
    now: datetime,
    tz: str,
    *,
    statistics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the overview shows, as of `now`, with day boundaries in time zone `tz`;
    `statistics`: the posts' part (`post_statistics`) when the caller already has it."""
    posts = statistics or post_statistics(conn, now, tz)
    return {
        "now": now.astimezone(UTC).isoformat(),
        **posts,
        "events": _hot_events(conn, now),
        "alerts": _open_alerts(conn),
        "cases": _open_cases(conn, person, now),
    }


def post_statistics(conn: Connection, now: datetime, tz: str) -> dict[str, Any]:
    """The posts' part of the overview: volume, hourly trend, mixes, top sources and regions.

    The same for everyone, and it reads every post of the last two days."""
    zone = ZoneInfo(tz)
    now = now.astimezone(UTC)
    local = now.astimezone(zone)
    today_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    # Wall-clock arithmetic: "the same time yesterday" in the office's zone.
    yesterday_start = (today_start - timedelta(days=1)).astimezone(UTC)
    yesterday_same = (local - timedelta(days=1)).astimezone(UTC)
    today_start = today_start.astimezone(UTC)

    today = _count(conn, today_start, now)
    yesterday = _count(conn, yesterday_start, yesterday_same)
    change = today - yesterday
    today_posts = _posts_between(today_start, now)
    polarity, emotion = _mixes(conn, today_posts)
    return {
        "timezone": tz,
        "day": local.date().isoformat(),
        "volume": {
            "today": today,
            "yesterday_same_time": yesterday,
            "change": change,
            "change_pct": round(change * 100.0 / yesterday, 1) if yesterday else None,
        },
        "hourly": _hourly(conn, now, zone),
        "polarity": polarity,
        "emotion": emotion,
        "sources": _top_sources(conn, today_posts),
        "regions": _top_regions(conn, today_posts),
    }


class SharedStatistics:
    """`post_statistics` computed at most once per `ttl_s` in this process, for everyone.

    With 50,000 posts a day they take about half a second, and every open overview asks for
    them every 10 s: one computation serves all the people looking within `ttl_s`. When they
    are due, a background thread computes them afresh while requests get the previous ones
    at once (at most one computation older); only the very first request waits for them."""

    def __init__(self, engine: Any, tz: str, ttl_s: float) -> None:
        self.engine, self.tz, self.ttl_s = engine, tz, ttl_s
        self._lock = threading.Lock()
        self._value: dict[str, Any] | None = None
        self._at = 0.0

    def get(self) -> dict[str, Any]:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._compute()
                return self._value  # type: ignore[return-value]
        if time.monotonic() - self._at >= self.ttl_s and self._lock.acquire(blocking=False):
            threading.Thread(target=self._refresh, name="overview-statistics", daemon=True).start()
        return value

    def _refresh(self) -> None:
        try:
            self._compute()
        except Exception:  # the previous numbers stay; the next request tries again
            log.exception("could not compute the overview's post statistics")
        finally:
            self._lock.release()

    def _compute(self) -> None:
        with self.engine.connect() as conn:
            self._value = post_statistics(conn, datetime.now(UTC), self.tz)
        self._at = time.monotonic()


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    """Add GET /api/v1/overview and GET /overview (`?wall=1`: the wall-screen mode)."""
    tz = settings.default_timezone
    # The posts' numbers may be up to STATISTICS_TTL_S old; events, alerts and cases, which
    # people act on, are always read afresh.
    shared = SharedStatistics(engine, tz, STATISTICS_TTL_S)

    @app.get("/api/v1/overview")
    def api_overview(request: Request) -> dict[str, Any]:
        """态势总览 for the signed-in person (their case scope), as of now."""
        person = require_user(request)
        now = datetime.now(UTC)
        with engine.connect() as conn:
            return summary(conn, person, now, tz, statistics=shared.get())

    # The overview is the home page after signing in.
    @app.get("/", response_class=HTMLResponse)
    @app.get("/overview", response_class=HTMLResponse)
    def overview_page(
        request: Request, wall: bool = False, refresh: int | None = Query(None, ge=2, le=600)
    ) -> HTMLResponse:
        """The page; `refresh` (seconds) overrides how often it reloads its numbers."""
        person = require_user(request)
        now = datetime.now(UTC)
        with engine.connect() as conn:
            data = summary(conn, person, now, tz, statistics=shared.get())
        return templates.TemplateResponse(
            request,
            "overview.html",
            {
                "data": data,
                "wall": wall,
                # The wall mode is the same page in a layout of its own (no header, dark).
                "layout": "overview_wall.html" if wall else "base.html",
                "refresh_s": refresh or (30 if wall else 10),
                "labels": label_map(),
            },
        )


__all__ = ["SharedStatistics", "post_statistics", "register", "summary"]
