"""The topic and event pages (监测方案, 事件); their data comes from the same services as the API
in `tingfeng.web.topics_events`, and every change they make goes through that API.

/topics (the list and a new topic's editor), /topics/{id} (the editor with the difference
against the saved version, and the version history), /events (filtered, paged) and
/events/{id} (timeline, origin, spread tree, sources, opinion groups, the level with its
reasons, and the decisions: override, merge, split).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from tingfeng.db.models import as_utc
from tingfeng.events.browse import (
    SORTS,
    EventFilter,
    find_events,
    hourly_timeline,
    origin_post,
    source_names,
    spread_tree,
)
from tingfeng.events.decisions import EventError
from tingfeng.events.grading import TIER_LABELS
from tingfeng.events.service import event_detail, event_posts, recent_spikes
from tingfeng.topics.activity import last_changes, match_counts_since
from tingfeng.topics.store import TopicError, get_topic, list_topics, topic_versions
from tingfeng.web import local_formatter
from tingfeng.web.guard import require_user, roles_for
from tingfeng.web.i18n import N_, current_language, gettext
from tingfeng.web.labels import LEVEL_ZH

LEVELS = ("general", "serious", "major", "critical")
LEVEL_LABELS = LEVEL_ZH
STATUS_LABELS = {"open": N_("进行中"), "merged": N_("已合并"), "all": N_("全部")}
SORT_LABELS = {
    "heat": N_("按热度"),
    "level": N_("按等级"),
    "recent": N_("按最近"),
    "posts": N_("按信息量"),
}
POLARITY_LABELS = {
    "negative": N_("负面"),
    "neutral": N_("中性"),
    "positive": N_("正面"),
    "unknown": N_("未知"),
}
# The preview's look-back windows (days; 0: every stored post).
WINDOWS = {7: N_("近7天"), 30: N_("近30天"), 90: N_("近90天"), 0: N_("全部")}
EVENTS_PER_PAGE = 30
EVENT_POSTS_SHOWN = 50


def _may(request: Request, method: str, path: str) -> bool:
    """Whether the signed-in person's role may call an API route (to show its form or not)."""
    me = require_user(request)
    return me.role in roles_for(method, path)


def _local_day(value: str, tz: str) -> datetime | None:
    """The start of a local calendar day given as YYYY-MM-DD, in UTC; None for "" or nonsense."""
    try:
        day = datetime.strptime(value.strip(), "%Y-%m-%d")
    except ValueError:
        return None
    return day.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)


def _tier_label(tier: str | None) -> str:
    zh, en = TIER_LABELS.get(tier or "other", TIER_LABELS["other"])
    return en if current_language.get() == "en" else zh


def _grade_view(grade: dict[str, Any] | None) -> dict[str, Any] | None:
    """The stored grade in the page's language: the explanation and its reasons as lists."""
    if not grade:
        return None
    en = current_language.get() == "en"
    reasons = []
    for f in sorted(grade.get("factors") or (), key=lambda f: -(f.get("contribution") or 0)):
        reasons.append(
            {
                "label": f.get("label_en" if en else "label_zh") or f.get("name"),
                "detail": f.get("detail_en" if en else "detail_zh") or "",
                "score": f.get("score") or 0.0,
                "weight": f.get("weight") or 0.0,
                "contribution": f.get("contribution") or 0.0,
            }
        )
    return {
        **grade,
        "explanation": grade.get("explanation_en" if en else "explanation_zh") or "",
        "reasons": reasons,
        "to_next_lines": list(grade.get("to_next" if en else "to_next_zh") or ()),
    }


def register_pages(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Any) -> None:
    tz = settings.default_timezone
    local = local_formatter(tz)

    def when(value: Any) -> str:
        """A stored time (datetime, or text as raw SQL reads it: naive means UTC) in the
        office's time zone."""
        if value is None or value == "":
            return ""
        try:
            return local(as_utc(value).isoformat())  # type: ignore[union-attr]
        except ValueError:
            return str(value)

    common = {"when": when, "level_labels": LEVEL_LABELS, "levels": LEVELS, "tz": tz}

    @app.get("/topics", response_class=HTMLResponse)
    def topics_page(request: Request) -> HTMLResponse:
        since = datetime.now(UTC) - timedelta(hours=24)
        with engine.connect() as conn:
            topics = list_topics(conn)
            recent = match_counts_since(conn, since)
            changes = last_changes(conn)
        return templates.TemplateResponse(
            request, "topics.html",
            {**common, "topics": topics, "recent": recent, "changes": changes, "topic": None,
             "versions": [], "windows": WINDOWS,
             "can_save": _may(request, "POST", "/api/v1/topics"),
             "can_preview": _may(request, "POST", "/api/v1/topics/preview")},
        )  # fmt: skip

    @app.get("/topics/{topic_id}", response_class=HTMLResponse)
    def topic_page(request: Request, topic_id: int) -> HTMLResponse:
        with engine.connect() as conn:
            try:
                topic = get_topic(conn, topic_id)
            except TopicError as exc:
                raise HTTPException(404, str(exc)) from exc
            versions = list(reversed(topic_versions(conn, topic_id)))
            recent = match_counts_since(conn, datetime.now(UTC) - timedelta(hours=24))
        return templates.TemplateResponse(
            request, "topic.html",
            {**common, "topic": topic, "versions": versions, "windows": WINDOWS,
             "matches_24h": recent.get(topic.id, 0),
             "can_save": _may(request, "PATCH", "/api/v1/topics/{topic_id}"),
             "can_delete": _may(request, "DELETE", "/api/v1/topics/{topic_id}"),
             "can_preview": _may(request, "POST", "/api/v1/topics/preview")},
        )  # fmt: skip

    @app.get("/events", response_class=HTMLResponse)
    def events_page(
        request: Request,
        level: list[str] = Query([]),
        status: str = "open",
        topic: str = "",
        since: str = "",
        until: str = "",
        sort: str = "heat",
        page: int = Query(1, ge=1, le=100_000),
    ) -> HTMLResponse:
        problems: list[str] = []
        levels = [lv for lv in level if lv in LEVELS]
        if len(levels) != len([lv for lv in level if lv]):
            problems.append(gettext("等级只能是一般、较大、重大或特大。"))
        if status not in ("open", "merged", "all"):
            status = "open"
        if sort not in SORTS:
            sort = "heat"
        topic_id = int(topic) if topic.strip().isdigit() else None
        start, end = _local_day(since, tz), _local_day(until, tz)
        if (since and start is None) or (until and end is None):
            problems.append(gettext("日期格式应为 YYYY-MM-DD，例如 2024-03-05。"))
        f = EventFilter(levels, status, topic_id, start, end + timedelta(days=1) if end else None)
        with engine.connect() as conn:
            events, total = find_events(
                conn, f, sort=sort, limit=EVENTS_PER_PAGE, offset=(page - 1) * EVENTS_PER_PAGE
            )
            spikes = recent_spikes(conn, limit=10)
            topics = list_topics(conn)
        pages = max(1, -(-total // EVENTS_PER_PAGE))
        chosen = {"level": levels, "status": status, "topic": topic_id or "",
                  "since": since if start else "", "until": until if end else "", "sort": sort}  # fmt: skip

        def page_url(n: int) -> str:
            return "/events?" + urlencode({**chosen, "page": n}, doseq=True)

        return templates.TemplateResponse(
            request, "events.html",
            {**common, "events": events, "total": total, "page": min(page, pages),
             "pages": pages, "page_url": page_url, "spikes": spikes, "topics": topics,
             "chosen": chosen, "problems": problems, "status_labels": STATUS_LABELS,
             "sort_labels": SORT_LABELS},
        )  # fmt: skip

    @app.get("/events/{event_id}", response_class=HTMLResponse)
    def event_page(request: Request, event_id: int) -> HTMLResponse:
        with engine.connect() as conn:
            try:
                event = event_detail(conn, event_id)
            except EventError as exc:
                raise HTTPException(404, str(exc)) from exc
            profile = event["profile"] or {}
            posts = event_posts(conn, event_id, limit=EVENT_POSTS_SHOWN)
            timeline = hourly_timeline(conn, event_id, tz)
            tree = spread_tree(conn, event_id, event["first_post_id"])
            origin = origin_post(conn, event["first_post_id"])
            counted = profile.get("sources") or []
            names = source_names(conn, [s["source_id"] for s in counted])
        sources = [
            {"id": s["source_id"], "name": names.get(s["source_id"], ("?", "other"))[0],
             "tier": _tier_label(names.get(s["source_id"], ("?", "other"))[1]),
             "posts": s["posts"]}
            for s in counted
        ]  # fmt: skip
        tiers = [
            {"name": _tier_label(tier), "value": n}
            for tier, n in sorted((profile.get("tiers") or {}).items(), key=lambda kv: -kv[1])
        ]
        return templates.TemplateResponse(
            request, "event.html",
            {**common, "e": event, "p": profile, "posts": posts, "grade": _grade_view(
                event["grade"]), "timeline": timeline, "tree": tree, "origin": origin,
             "sources": sources, "tiers": tiers, "polarity_labels": POLARITY_LABELS,
             "can_decide": _may(request, "POST", "/api/v1/events/{event_id}/grade"),
             "can_merge": _may(request, "POST", "/api/v1/events/{event_id}/merge"),
             "can_split": _may(request, "POST", "/api/v1/events/{event_id}/split"),
             "can_open_case": _may(request, "POST", "/cases/open")},
        )  # fmt: skip
