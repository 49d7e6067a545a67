"""Sources (信源): list with health, add with a test fetch, schedules, hot mode, fetch now.

The pages read on the server and act through the JSON API from their script
(static/sources.js), so a push token issued in the browser is shown once and never travels in a
URL. Everything here goes through the services of `tingfeng.collect` that the command line
uses too (add_source, update_source, set_hot_mode, preview_source, run_source).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy import Connection, select

from tingfeng.collect.errors import ConfigError
from tingfeng.collect.health import SourceHealth, count_runs, health_report, recent_runs
from tingfeng.collect.scheduler import PASSIVE_KINDS
from tingfeng.collect.sources import (
    SourceNotFound,
    check_timezone,
    config_with_url,
    find_source,
    list_sources,
    parse_interval,
)
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import Post, Source
from tingfeng.settings import Settings
from tingfeng.web import local_formatter
from tingfeng.web.guard import roles_for
from tingfeng.web.i18n import N_

STATUSES = ("healthy", "failing", "stale", "never", "disabled", "passive")
# Kinds a person may add in the browser: those that fetch through the guarded fetcher, and
# push. Imports and replays read a file on the server, and a path typed into a web form must
# never read the server's files: they are added with `tingfeng source add` / `tingfeng ingest`.
# Lead sources are made by submitting leads.
WEB_KINDS = {
    "feed": N_("订阅源（RSS/Atom/JSON Feed）"),
    "board": N_("栏目或论坛列表页"),
    "site_search": N_("站内搜索（按关键词）"),
    "json_api": N_("JSON 接口（开放平台、热榜）"),
    "push": N_("推送接入（其他平台推送过来）"),
}
KIND_LABELS = WEB_KINDS | {
    "import": N_("文件导入"),
    "replay": N_("回放"),
    "lead": N_("线索报送"),
}
# How long "fetch now" waits for the run before answering; the run goes on after that and
# its result shows in the fetch log.
FETCH_WAIT_S = 30.0
PREVIEW_LIMIT = 10
MASK = "***"


class SourceDraft(BaseModel):
    """A source not stored yet: what a test fetch needs."""

    kind: str = Field(examples=["feed"])
    url: str | None = Field(None, description="The main address (goes to the kind's field).")
    config: dict[str, Any] = Field(default_factory=dict, description="The connector's fields.")
    timezone: str | None = Field(None, description="For times given without one.")


class SourceIn(SourceDraft):
    name: str
    interval: str | int = Field("15m", examples=["15m", 900])
    hot_interval: str | int = Field("1m", examples=["1m", 60])
    region: str | None = None
    enabled: bool = True
    check: bool = Field(True, description="Test-fetch first and store nothing if the fetch fails.")


class SourcePatch(BaseModel):
    name: str | None = None
    config: dict[str, Any] | None = Field(None, description="Replaces the whole configuration.")
    interval: str | int | None = None
    hot_interval: str | int | None = None
    timezone: str | None = None
    region: str | None = Field(None, description='"" clears it.')
    enabled: bool | None = None


class HotIn(BaseModel):
    minutes: int = Field(60, ge=0, le=30 * 24 * 60, description="0 ends hot mode.")


def interval_text(seconds: int | None) -> str:
    """900 → "15m": the compact form the forms and the command line accept."""
    if not seconds:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def masked_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """The configuration as shown to readers: header values (API tokens, cookies) hidden."""
    out = dict(config or {})
    if isinstance(out.get("headers"), dict):
        out["headers"] = {key: MASK for key in out["headers"]}
    return out


def source_json(source: Source, health: SourceHealth, now: datetime) -> dict[str, Any]:
    hot = source.hot_until is not None and source.hot_until > now
    return {
        "id": source.id,
        "name": source.name,
        "kind": source.kind,
        "enabled": source.enabled,
        "interval_s": source.interval_s,
        "hot_interval_s": source.hot_interval_s,
        "hot_until": source.hot_until.isoformat() if hot and source.hot_until else None,
        "hot": hot,
        "timezone": source.timezone,
        "region": source.region,
        "tier": source.tier,
        "config": masked_config(source.config),
        "has_push_token": bool(source.push_token_hash),
        "created_at": source.created_at.isoformat() if source.created_at else None,
        "health": health.as_dict(),
    }


def recent_posts(conn: Connection, source_id: int, limit: int = 20) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(
            Post.id, Post.kind, Post.title, Post.text_clean, Post.url, Post.author,
            Post.published_at, Post.fetched_at,
        )
        .where(Post.source_id == source_id)
        .order_by(Post.id.desc())
        .limit(limit)
    ).all()  # fmt: skip
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "title": r.title,
            "text": (r.text_clean or "")[:300],
            "url": r.url,
            "author": r.author,
            "published_at": r.published_at.isoformat() if r.published_at else None,
            "fetched_at": r.fetched_at.isoformat() if r.fetched_at else None,
        }
        for r in rows
    ]


def _seconds(value: str | int | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return parse_interval(value)
    except ConfigError as exc:
        raise HTTPException(422, f"{what}: {exc.message}") from exc


def _web_kind(kind: str) -> str:
    if kind not in WEB_KINDS:
        raise HTTPException(
            422,
            f"A {kind!r} source cannot be added here: choose one of {', '.join(WEB_KINDS)}. "
            "Imports and replays read files on the server: add them with `tingfeng source add`.",
        )
    return kind


def _timezone(name: str | None, default: str) -> str:
    try:
        return check_timezone((name or "").strip() or default)
    except ConfigError as exc:
        raise HTTPException(422, exc.message) from exc


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    """Adds the pages and API routes of this area."""
    local = local_formatter(settings.default_timezone)
    fetch_now = _FetchNow(app, engine, settings)

    def detail(source_id: int) -> dict[str, Any]:
        now = datetime.now(UTC)
        with engine.connect() as conn:
            try:
                source = find_source(conn, source_id)
            except SourceNotFound as exc:
                raise HTTPException(404, f"No source {source_id}.") from exc
            health = health_report(conn, [source], now)[0]
            out = source_json(source, health, now)
            out["fetch_log"] = recent_runs(conn, source.id)
        return out

    def preview(draft: SourceDraft) -> dict[str, Any]:
        from tingfeng.collect.preview import preview_source

        kind = _web_kind(draft.kind)
        if kind in PASSIVE_KINDS:
            raise HTTPException(
                422, "A push source is not fetched: other platforms send posts to it."
            )
        tz = _timezone(draft.timezone, settings.default_timezone)
        result = preview_source(
            settings.model_copy(update={"default_timezone": tz}),
            None,
            kind=kind,
            config=config_with_url(kind, draft.config, draft.url),
            limit=PREVIEW_LIMIT,
        )
        good = [item for item in result.items if "error" not in item]
        for item in good:
            # For the page: the time as the office reads it (the ISO value stays UTC).
            item["published_local"] = local(item.get("published_at"))
        # A feed with no entries yet is not an error: it can be saved, with a word of warning.
        return {
            "ok": result.error is None,
            "count": len(good),
            "errors": result.errors,
            "error": result.error,
            "warning": None if good or result.error else "Nothing to store right now.",
            "items": result.items,
            "stored": 0,
        }

    # --- API: reading --------------------------------------------------------------------------

    @app.get("/api/v1/sources/{source_id}")
    def api_source(source_id: int) -> dict[str, Any]:
        """One source: settings (header values hidden), health and its newest runs."""
        return detail(source_id)

    @app.get("/api/v1/sources/{source_id}/fetch-log")
    def api_fetch_log(
        source_id: int, limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0)
    ) -> dict[str, Any]:
        """The source's runs, newest first: time, ok, items read and stored, error."""
        detail(source_id)  # 404 for a source that does not exist
        with engine.connect() as conn:
            return {
                "runs": recent_runs(conn, source_id, limit, offset),
                "total": count_runs(conn, source_id),
            }

    # --- API: changing -------------------------------------------------------------------------

    @app.post("/api/v1/sources/preview")
    def api_preview(draft: SourceDraft) -> dict[str, Any]:
        """Test fetch: what a draft source would store now (count, items, problems). Stores
        nothing; `ok` is false, with `error` in plain words, when nothing could be read."""
        return preview(draft)

    @app.post("/api/v1/sources", status_code=201)
    def api_add(body: SourceIn) -> dict[str, Any]:
        """Add a source. With `check` (the default) it is test-fetched first and nothing is
        stored if that fails. A push source's token is in the answer, once."""
        from tingfeng.collect.sources import add_source, issue_push_token

        kind = _web_kind(body.kind)
        interval = _seconds(body.interval, "interval") or 900
        hot_interval = _seconds(body.hot_interval, "hot_interval") or 60
        tz = _timezone(body.timezone, settings.default_timezone)
        if body.check and kind not in PASSIVE_KINDS:
            tested = preview(body)
            if not tested["ok"]:
                raise HTTPException(422, f"{tested['error']} (Nothing was stored.)")
        try:
            with write_transaction(engine) as conn:
                source = add_source(
                    conn, name=body.name, kind=kind,
                    config=config_with_url(kind, body.config, body.url),
                    interval_s=interval, hot_interval_s=hot_interval, timezone=tz,
                    region=(body.region or "").strip() or None, enabled=body.enabled,
                )  # fmt: skip
                token = issue_push_token(conn, source.id) if kind == "push" else None
        except ConfigError as exc:
            raise HTTPException(422, exc.message) from exc
        out = detail(source.id)
        if token:
            out["push_token"] = token
        return out

    @app.patch("/api/v1/sources/{source_id}")
    def api_update(source_id: int, body: SourcePatch) -> dict[str, Any]:
        """Change a source's name, schedule, time zone, region, configuration or enabled."""
        from tingfeng.collect.sources import update_source

        try:
            with write_transaction(engine) as conn:
                update_source(
                    conn, source_id, name=body.name, config=body.config,
                    interval_s=_seconds(body.interval, "interval"),
                    hot_interval_s=_seconds(body.hot_interval, "hot_interval"),
                    timezone=body.timezone, region=body.region, enabled=body.enabled,
                )  # fmt: skip
        except SourceNotFound as exc:
            raise HTTPException(404, f"No source {source_id}.") from exc
        except ConfigError as exc:
            raise HTTPException(422, exc.message) from exc
        return detail(source_id)

    @app.post("/api/v1/sources/{source_id}/hot")
    def api_hot(source_id: int, body: HotIn) -> dict[str, Any]:
        """Hot mode: poll at the hot interval for `minutes` (an event is active); 0 ends it."""
        from tingfeng.collect.sources import set_hot_mode

        try:
            with write_transaction(engine) as conn:
                set_hot_mode(conn, source_id, body.minutes)
        except SourceNotFound as exc:
            raise HTTPException(404, f"No source {source_id}.") from exc
        except ConfigError as exc:
            raise HTTPException(422, exc.message) from exc
        return detail(source_id)

    @app.post(
        "/api/v1/sources/{source_id}/fetch",
        response_model=None,
        responses={202: {"description": "Still fetching: the result will be in the fetch log."}},
    )
    def api_fetch(source_id: int) -> dict[str, Any] | JSONResponse:
        """Fetch the source now and store what it yields. Answers with the run's outcome, or
        202 `{"running": true}` when it takes longer than FETCH_WAIT_S (see the fetch log)."""
        source = detail(source_id)
        if source["kind"] in PASSIVE_KINDS:
            raise HTTPException(
                422, f"A {source['kind']} source is not fetched: its posts are sent to it."
            )
        return fetch_now.run(source_id)

    @app.post("/api/v1/sources/{source_id}/token")
    def api_token(source_id: int) -> dict[str, Any]:
        """Issue a new push token (shown once; the old one stops working)."""
        from tingfeng import audit
        from tingfeng.collect.sources import issue_push_token

        with write_transaction(engine) as conn:
            try:
                source = find_source(conn, source_id)
            except SourceNotFound as exc:
                raise HTTPException(404, f"No source {source_id}.") from exc
            if source.kind != "push":
                raise HTTPException(
                    422, f"{source.name} is a {source.kind} source: only push sources take tokens."
                )
            token = issue_push_token(conn, source.id)
            audit.record(conn, None, "settings.source_token", f"source:{source.id}", {})
        return {"push_token": token, "push_url": f"/api/v1/sources/{source.id}/posts"}

    # --- pages ---------------------------------------------------------------------------------

    def may_change(request: Request) -> bool:
        me = request.state.user
        return me is not None and me.role in roles_for("POST", "/api/v1/sources")

    @app.get("/sources", response_class=HTMLResponse)
    def sources_page(request: Request, status: str = "") -> HTMLResponse:
        now = datetime.now(UTC)
        with engine.connect() as conn:
            sources = list_sources(conn)
            report = health_report(conn, sources, now)
        counts = {s: 0 for s in STATUSES}
        for h in report:
            counts[h.status] = counts.get(h.status, 0) + 1
        status = status if status in STATUSES else ""
        rows = [
            source_json(s, h, now)
            for s, h in zip(sources, report, strict=True)
            if not status or h.status == status
        ]
        return templates.TemplateResponse(
            request, "sources.html",
            {"rows": rows, "counts": counts, "status": status, "total": len(report),
             "statuses": STATUSES, "kinds": KIND_LABELS, "local": local,
             "every": interval_text, "passive_kinds": PASSIVE_KINDS,
             "may_change": may_change(request)},
        )  # fmt: skip

    @app.get("/sources/new", response_class=HTMLResponse)
    def new_source_page(request: Request) -> HTMLResponse:
        from tingfeng.collect.connectors.json_api import preset_names

        return templates.TemplateResponse(
            request, "source_new.html",
            {"kinds": WEB_KINDS, "presets": preset_names(),
             "timezone": settings.default_timezone, "may_change": may_change(request)},
        )  # fmt: skip

    @app.get("/sources/{source_id}", response_class=HTMLResponse)
    def source_page(request: Request, source_id: int) -> HTMLResponse:
        source = detail(source_id)
        with engine.connect() as conn:
            posts = recent_posts(conn, source_id)
        return templates.TemplateResponse(
            request, "source.html",
            {"s": source, "h": source["health"], "runs": source["fetch_log"], "posts": posts,
             "kinds": KIND_LABELS, "local": local, "every": interval_text,
             "passive": source["kind"] in PASSIVE_KINDS, "may_change": may_change(request)},
        )  # fmt: skip


class _FetchNow:
    """Runs a source at once, through the application's own runtime when it has one.

    The app built by `create_app` may expose its runtime as `app.state.runtime` (its shared
    ingestor and fetcher); otherwise one is built on first use over the same database. The run
    goes in a daemon thread so the request can answer after FETCH_WAIT_S while a long run (a
    board with many article pages) goes on; the source's lease keeps it to one run at a time,
    and a run cut short by a shutdown is simply due again when the lease expires.
    """

    def __init__(self, app: FastAPI, engine: Any, settings: Settings) -> None:
        self.app = app
        self.engine = engine
        self.settings = settings
        self._lock = threading.Lock()
        self._runtime: Any = None

    def _runtime_of(self) -> Any:
        shared = getattr(self.app.state, "runtime", None)
        if shared is not None:
            return shared
        with self._lock:
            if self._runtime is None:
                from tingfeng.tasks import Runtime

                self._runtime = Runtime(self.settings, _engine=self.engine)
            return self._runtime

    def run(self, source_id: int) -> dict[str, Any] | JSONResponse:
        from tingfeng.collect.runner import RunOutcome, run_source

        rt = self._runtime_of()
        done = threading.Event()
        result: list[RunOutcome] = []

        def work() -> None:
            try:
                result.append(run_source(self.engine, rt.ingestor, rt.fetcher, source_id))
            finally:
                done.set()

        threading.Thread(target=work, name=f"fetch-now-{source_id}", daemon=True).start()
        if not done.wait(FETCH_WAIT_S):
            return JSONResponse(
                {
                    "running": True,
                    "message": "Still fetching: the result will be in the fetch log.",
                },
                status_code=202,
            )
        if not result:
            raise HTTPException(500, "The fetch failed unexpectedly: see the server's log.")
        outcome = result[0]
        if not outcome.ran:
            raise HTTPException(
                409, "Another worker is fetching this source right now: see the fetch log soon."
            )
        stats = outcome.stats.summary() if outcome.stats else {}
        return {"running": False, "ok": outcome.ok, "error": outcome.error} | stats
