"""API for topics (监测方案), events (事件), grades and spikes; the pages are in
`tingfeng.web.topics_events_pages` and change nothing themselves: their scripts call this API,
so the guard's table of roles covers both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from tingfeng.db.engine import write_transaction
from tingfeng.events.browse import EventFilter, find_events
from tingfeng.events.decisions import (
    EventError,
    clear_grade_override,
    merge_events,
    override_grade,
    split_event,
)
from tingfeng.events.service import event_detail, event_posts, recent_spikes
from tingfeng.settings import Settings
from tingfeng.topics import QuerySyntaxError
from tingfeng.topics.store import (
    TopicError,
    clean_exclusions,
    create_topic,
    delete_topic,
    get_topic,
    list_topics,
    topic_versions,
    update_topic,
)
from tingfeng.topics.stored import preview
from tingfeng.web.guard import require_user


class TopicIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    query: str = Field(min_length=1, max_length=4000)
    exclusions: list[str] = Field(default_factory=list, max_length=200)
    source_ids: list[int] | None = None
    enabled: bool = True
    note: str | None = None


class TopicPatch(BaseModel):
    name: str | None = None
    query: str | None = None
    exclusions: list[str] | None = None
    source_ids: list[int] | None = None
    all_sources: bool = False
    enabled: bool | None = None
    note: str | None = None


class PreviewIn(BaseModel):
    query: str = Field(min_length=1, max_length=4000)
    exclusions: list[str] = Field(default_factory=list, max_length=200)
    source_ids: list[int] | None = None
    topic_id: int | None = None  # compare with this saved topic
    samples: int = Field(10, ge=0, le=50)
    # Only posts published in the last `days` days, for the draft and the saved version alike.
    days: int | None = Field(None, ge=1, le=3650)


class MergeIn(BaseModel):
    other: int
    reason: str | None = None
    by: str = "api"


class SplitIn(BaseModel):
    post_ids: list[int] = Field(min_length=1, max_length=10_000)
    reason: str | None = None
    by: str = "api"


class GradeIn(BaseModel):
    level: str | None = None
    reason: str | None = None
    clear: bool = False
    by: str = "api"


def _aware(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def _query_error(exc: QuerySyntaxError) -> HTTPException:
    return HTTPException(
        422,
        {
            "message": str(exc),
            "position": getattr(exc, "position", None),
            "expected": getattr(exc, "expected", None),
        },
    )


def register(
    app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings | None = None
) -> None:
    """Add the topic and event routes to `app` (settings: the app's own when not given)."""
    tz = (settings or app.state.settings).default_timezone

    @app.get("/api/v1/topics")
    def api_topics() -> dict[str, Any]:
        with engine.connect() as conn:
            return {"topics": [t.to_dict() for t in list_topics(conn)]}

    @app.post("/api/v1/topics", status_code=201)
    def api_topic_create(request: Request, body: TopicIn) -> dict[str, Any]:
        me = require_user(request)
        try:
            with write_transaction(engine) as conn:
                topic = create_topic(
                    conn,
                    body.name,
                    body.query,
                    exclusions=body.exclusions,
                    source_ids=body.source_ids,
                    enabled=body.enabled,
                    note=body.note,
                    by=me.username,
                )
        except QuerySyntaxError as exc:
            raise _query_error(exc) from exc
        except TopicError as exc:
            raise HTTPException(422, str(exc)) from exc
        return topic.to_dict()

    @app.get("/api/v1/topics/{topic_id}")
    def api_topic(topic_id: int) -> dict[str, Any]:
        with engine.connect() as conn:
            try:
                return {
                    **get_topic(conn, topic_id).to_dict(),
                    "versions": topic_versions(conn, topic_id),
                }
            except TopicError as exc:
                raise HTTPException(404, str(exc)) from exc

    @app.patch("/api/v1/topics/{topic_id}")
    def api_topic_update(request: Request, topic_id: int, body: TopicPatch) -> dict[str, Any]:
        me = require_user(request)
        sources: Any = False
        if body.all_sources:
            sources = None
        elif body.source_ids is not None:
            sources = body.source_ids
        try:
            with write_transaction(engine) as conn:
                get_topic(conn, topic_id)
                topic = update_topic(
                    conn,
                    topic_id,
                    name=body.name,
                    query=body.query,
                    exclusions=body.exclusions,
                    source_ids=sources,
                    enabled=body.enabled,
                    note=body.note,
                    by=me.username,
                )
        except QuerySyntaxError as exc:
            raise _query_error(exc) from exc
        except TopicError as exc:
            raise HTTPException(404 if "no topic" in str(exc) else 422, str(exc)) from exc
        return topic.to_dict()

    @app.delete("/api/v1/topics/{topic_id}")
    def api_topic_delete(topic_id: int) -> dict[str, Any]:
        try:
            with write_transaction(engine) as conn:
                topic = delete_topic(conn, topic_id)
        except TopicError as exc:
            raise HTTPException(404, str(exc)) from exc
        return {"deleted": topic.id}

    @app.post("/api/v1/topics/preview")
    def api_topic_preview(body: PreviewIn) -> dict[str, Any]:
        """What a draft query matches among stored posts, and the change against a saved topic:
        `diff.added` posts the draft matches and the saved version does not, `diff.removed` the
        reverse, both queries run over the same posts (the last `days` days, or all)."""
        since = datetime.now(UTC) - timedelta(days=body.days) if body.days else None
        try:
            # The phrases as saving would keep them: a blank one is dropped, not an error.
            exclusions = clean_exclusions(body.exclusions)
        except TopicError as exc:
            raise HTTPException(422, str(exc)) from exc
        with engine.connect() as conn:
            try:
                saved = get_topic(conn, body.topic_id) if body.topic_id is not None else None
                out = preview(
                    conn,
                    body.query,
                    exclusions=exclusions,
                    source_ids=body.source_ids,
                    since=since,
                    saved=saved,
                    samples=body.samples,
                    tz=tz,
                )
            except QuerySyntaxError as exc:
                raise _query_error(exc) from exc
            except TopicError as exc:
                raise HTTPException(404, str(exc)) from exc
        out["since"] = since.isoformat() if since else None
        return out

    @app.get("/api/v1/events")
    def api_events(
        level: list[str] = Query([]),
        sort: str = Query("recent", pattern="^(recent|heat|level|posts)$"),
        status: str = Query("open", pattern="^(open|merged|all)$"),
        topic_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = Query(30, ge=1, le=500),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        """Events; `since`/`until` keep those active in the range (last post after `since`,
        first post before `until`), `topic_id` those with posts the topic matched."""
        f = EventFilter(level, status, topic_id, _aware(since), _aware(until))
        with engine.connect() as conn:
            try:
                events, total = find_events(conn, f, sort=sort, limit=limit, offset=offset)
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from exc
        return {"events": events, "total": total, "limit": limit, "offset": offset}

    @app.get("/api/v1/events/{event_id}")
    def api_event(event_id: int) -> dict[str, Any]:
        with engine.connect() as conn:
            try:
                return event_detail(conn, event_id)
            except EventError as exc:
                raise HTTPException(404, str(exc)) from exc

    @app.get("/api/v1/events/{event_id}/posts")
    def api_event_posts(
        event_id: int, limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0)
    ) -> dict[str, Any]:
        with engine.connect() as conn:
            return {"posts": event_posts(conn, event_id, limit=limit, offset=offset)}

    @app.post("/api/v1/events/{event_id}/merge")
    def api_event_merge(request: Request, event_id: int, body: MergeIn) -> dict[str, Any]:
        by = require_user(request).username
        try:
            with write_transaction(engine) as conn:
                kept = merge_events(conn, event_id, body.other, by=by, reason=body.reason)
        except EventError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"event_id": kept, "merged": body.other}

    @app.post("/api/v1/events/{event_id}/split")
    def api_event_split(request: Request, event_id: int, body: SplitIn) -> dict[str, Any]:
        by = require_user(request).username
        try:
            with write_transaction(engine) as conn:
                new_id = split_event(conn, event_id, body.post_ids, by=by, reason=body.reason)
        except EventError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"event_id": event_id, "new_event_id": new_id}

    @app.post("/api/v1/events/{event_id}/grade")
    def api_event_grade(request: Request, event_id: int, body: GradeIn) -> dict[str, Any]:
        by = require_user(request).username
        try:
            with write_transaction(engine) as conn:
                if body.clear:
                    clear_grade_override(conn, event_id, by=by, reason=body.reason)
                    return {"event_id": event_id, "override": None}
                if not body.level:
                    raise EventError("give a level, or clear: true")
                grade = override_grade(conn, event_id, body.level, reason=body.reason or "", by=by)
        except EventError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"event_id": event_id, "grade": grade}

    @app.get("/api/v1/spikes")
    def api_spikes(limit: int = Query(30, ge=1, le=500)) -> dict[str, Any]:
        with engine.connect() as conn:
            return {"spikes": recent_spikes(conn, limit=limit)}

    from tingfeng.web.topics_events_pages import register_pages

    register_pages(app, engine, templates, settings or app.state.settings)
