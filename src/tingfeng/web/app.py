"""The web application and API (application factory; nothing runs at import).

This is the foundation's slice of the web application: a live feed of collected posts,
search, source health, the push API and lead submission. Sign-in, roles and CSRF arrive with
the full web application; until then the server listens on 127.0.0.1 only by default.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from tingfeng import __version__
from tingfeng.collect.errors import CollectError
from tingfeng.collect.health import health_report
from tingfeng.collect.sources import SourceNotFound, find_source, list_sources, verify_push_token
from tingfeng.db.models import Post
from tingfeng.ingest.readings import readings_of
from tingfeng.settings import Settings
from tingfeng.tasks import Queue, Runtime
from tingfeng.web.i18n import N_

TEMPLATES = Path(__file__).with_name("templates")
MAX_PUSH_BYTES = 5 * 1024 * 1024

STATUS_LABELS = {
    "healthy": N_("正常"),
    "failing": N_("故障"),
    "stale": N_("停滞"),
    "never": N_("未运行"),
    "disabled": N_("已停用"),
    "passive": N_("被动接收"),
}


def safe_url(url: str | None) -> str:
    """Only http(s) links from collected posts reach an href (no javascript: or data:)."""
    if url and url.strip().lower().startswith(("http://", "https://")):
        return url.strip()
    return "#"


def _post_json(p: Any) -> dict[str, Any]:
    return {
        "id": p.id,
        "source_id": p.source_id,
        "kind": p.kind,
        "title": p.title,
        "text": p.text_clean[:500],
        "url": p.url,
        "author": p.author,
        "lang": p.lang,
        "published_at": p.published_at.isoformat() if p.published_at else None,
        "fetched_at": p.fetched_at.isoformat() if p.fetched_at else None,
        "dup_group": p.dup_group,
        "dup_kind": p.dup_kind,
        "reposts_of_id": p.reposts_of_id,
    }


def _reading_summary(reading: dict[str, Any]) -> dict[str, Any]:
    """What a list of posts shows of a reading (the full one is at /api/v1/posts/{id}/reading)."""
    return {
        "polarity": reading["polarity"],
        "polarity_score": reading["polarity_score"],
        "emotion": reading["emotion"],
        "needs_verification": reading["needs_verification"],
        "categories": [c["slug"] for c in reading["categories"]],
        "regions": ["/".join(r["path"]) for r in reading["regions"]],
        "keywords": [k[0] for k in reading["keywords"][:5]],
    }


def create_app(
    settings: Settings, *, queue: Queue | None = None, runtime: Runtime | None = None
) -> FastAPI:
    rt = runtime or (queue.runtime if queue else Runtime(settings))
    from fastapi import Depends

    from tingfeng.web.guard import SignInRequired, guard, sign_in_required_response

    app = FastAPI(
        title="Tingfeng 听风",
        version=__version__,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        # Sign-in, CSRF and the role of every route (tingfeng.web.guard).
        dependencies=[Depends(guard)],
    )
    app.state.engine = rt.engine
    app.state.runtime = rt
    # The push analysis helpers (tingfeng.ingest.helper) end with the application.
    app.router.on_shutdown.append(rt.stop_helpers)
    app.state.settings = settings

    def openapi() -> dict[str, Any]:
        """The OpenAPI description, saying how to authenticate (tingfeng.web.guard)."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "apiToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal API token: `tingfeng user token-add USER`.",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "tf_session",
                    "description": "The browser session from POST /login; changes also need "
                    "the X-CSRF-Token header.",
                },
            }
            schema["security"] = [{"apiToken": []}, {"session": []}]
            from tingfeng.web.openapi_errors import document_errors

            app.openapi_schema = document_errors(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_exception_handler(SignInRequired, sign_in_required_response)

    from tingfeng.web import i18n
    from tingfeng.web.assets import register as register_assets
    from tingfeng.web.sanitize import clean_html
    from tingfeng.web.security import SecurityHeadersMiddleware, csp_nonce

    # The Content-Security-Policy with a nonce per response, and the request's language.
    app.add_middleware(i18n.LanguageMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    register_assets(app)

    templates = Jinja2Templates(directory=str(TEMPLATES))
    i18n.install(templates.env)
    templates.env.globals["csp_nonce"] = csp_nonce
    templates.env.filters["status_label"] = lambda s: i18n.gettext(STATUS_LABELS.get(s, s))
    templates.env.filters["safe_url"] = safe_url
    templates.env.filters["clean_html"] = clean_html

    from starlette.exceptions import HTTPException as StarletteHTTPException

    # Starlette's own (a body that cannot be parsed, an unknown path) answer the same way.
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    from sqlalchemy.exc import DataError

    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def _out_of_range(_request: Request, _exc: Exception) -> JSONResponse:
        # An id such as 10**30 passes the `int` of a route but not the database's integers
        # (SQLite raises OverflowError, PostgreSQL a DataError): bad input, not a crash.
        return JSONResponse(
            {"error": "A number in the request is out of range, or a text holds a character "
             "the database cannot store (NUL): check the values and try again."},
            status_code=422,
        )  # fmt: skip

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        with rt.engine.connect() as conn:
            conn.execute(select(1))
        return {"status": "ok", "version": __version__}

    from tingfeng.web.health import register as register_health  # /livez /readyz /metrics

    register_health(app, rt, settings)
    from tingfeng.web.unavailable import register as register_unavailable  # 503: database fault

    register_unavailable(app)

    @app.get("/api/v1/posts")
    def posts(
        after_id: int = 0, limit: int = Query(50, ge=1, le=500), source_id: int | None = None
    ) -> dict[str, Any]:
        """Newest posts, or the posts collected after `after_id` (for live updates)."""
        q = select(Post).order_by(Post.id.desc()).limit(limit)
        if after_id:
            q = q.where(Post.id > after_id)
        if source_id:
            q = q.where(Post.source_id == source_id)
        from sqlalchemy.orm import Session

        with Session(rt.engine) as session:
            rows = session.execute(q).scalars().all()
            total = session.execute(select(Post.id).order_by(Post.id.desc()).limit(1)).scalar()
            posts = [_post_json(p) for p in rows]
            readings = readings_of(session.connection(), [p["id"] for p in posts])
            for post in posts:
                reading = readings.get(post["id"])
                post["reading"] = _reading_summary(reading) if reading else None
            return {"posts": posts, "latest_id": total or 0}

    @app.get("/api/v1/sources")
    def sources() -> dict[str, Any]:
        with rt.engine.connect() as conn:
            report = health_report(conn, list_sources(conn), datetime.now(UTC))
        return {"sources": [h.as_dict() for h in report]}

    @app.post("/api/v1/sources/{source_id}/posts")
    async def push(
        source_id: int, request: Request, authorization: str = Header("")
    ) -> dict[str, Any]:
        """Push posts to a push source: `Authorization: Bearer <token>`, JSON body."""
        from starlette.concurrency import run_in_threadpool

        from tingfeng.collect.connectors.push import parse_push_payload
        from tingfeng.collect.runner import record_push
        from tingfeng.ingest.ingestor import SourceRef

        # The database, the token and parsing a thousand posts (tens of milliseconds) all run
        # off the event loop: there they held every other request, pages included, meanwhile.
        def check_source() -> Any:
            with rt.engine.connect() as conn:
                try:
                    source = find_source(conn, source_id)
                except SourceNotFound as exc:
                    raise HTTPException(404, str(exc)) from exc
            token = authorization.removeprefix("Bearer ").strip()
            if source.kind != "push" or not verify_push_token(source, token):
                raise HTTPException(401, "Missing or wrong push token for this source.")
            return source

        source = await run_in_threadpool(check_source)
        body = await request.body()
        if len(body) > MAX_PUSH_BYTES:
            raise HTTPException(
                413,
                f"The body is larger than {MAX_PUSH_BYTES // 1024 // 1024} MB: send fewer posts per request.",
            )

        def parse() -> Any:
            import json

            try:
                payload = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise HTTPException(400, f"The body is not valid JSON: {exc}") from exc
            defaults = source.config or {}
            try:
                return parse_push_payload(
                    payload, platform=defaults.get("platform"), kind=defaults.get("kind")
                )
            except CollectError as exc:
                raise HTTPException(422, exc.message) from exc

        items = await run_in_threadpool(parse)
        started = datetime.now(UTC)
        ref = SourceRef(source.id, source.timezone, source.region)
        ingestor = rt.ingestor
        prepared = None
        if rt.prepare_helper.wanted(len(items)):
            # Analysed in a helper process (tingfeng.ingest.helper); this one only stores.
            prepared = await run_in_threadpool(
                rt.prepare_helper.prepare, ref, items, ingestor.now()
            )
        if prepared is None:
            stats = await run_in_threadpool(ingestor.ingest, ref, items)
        else:
            stats = await run_in_threadpool(ingestor.store_prepared, ref, prepared)
            stats.seconds = (datetime.now(UTC) - started).total_seconds()
        await run_in_threadpool(
            record_push, rt.engine, source.id, stats, started, datetime.now(UTC)
        )
        return stats.summary() | {"rejected": stats.error_samples}

    @app.post("/api/v1/leads")
    async def lead(request: Request) -> dict[str, Any]:
        """Submit a lead: {"url": ...} or {"text": ...}, with "submitted_by" and an optional "note"."""
        from starlette.concurrency import run_in_threadpool

        from tingfeng.ingest.leads import submit_lead

        try:
            data = await request.json()
        except Exception as exc:
            raise HTTPException(
                400, 'The body must be JSON: {"url": ..., "submitted_by": ...}'
            ) from exc
        if not isinstance(data, dict) or not (data.get("url") or data.get("text")):
            raise HTTPException(422, 'Give a "url" or a "text".')
        if not str(data.get("submitted_by") or "").strip():
            raise HTTPException(422, 'Say who submits the lead in "submitted_by".')
        try:
            post_id, new = await run_in_threadpool(
                lambda: submit_lead(
                    settings,
                    rt.engine,
                    url=data.get("url"),
                    text=data.get("text"),
                    submitted_by=str(data["submitted_by"]),
                    note=data.get("note"),
                    fetcher=rt.fetcher,
                    ingestor=rt.ingestor,
                )
            )
        except CollectError as exc:
            raise HTTPException(422, exc.message) from exc
        return {"post_id": post_id, "new": new}

    from tingfeng.web.topics_events import register as register_topics_events

    register_topics_events(app, rt.engine, templates, settings)

    from tingfeng.web.duty import register as register_duty

    register_duty(app, rt.engine, templates, settings)
    from tingfeng.web.alerts import register as register_alerts

    register_alerts(app, rt.engine, templates, settings)
    from tingfeng.web.account import register as register_account
    from tingfeng.web.board import register as register_board
    from tingfeng.web.cases import register as register_cases

    register_cases(app, rt.engine, templates, settings)
    register_account(app, rt.engine, templates, settings)
    from tingfeng.web.overview import register as register_overview

    register_overview(app, rt.engine, templates, settings)
    register_board(app, rt.engine, templates, settings)
    from tingfeng.web.admin import register as register_admin
    from tingfeng.web.search import register as register_search
    from tingfeng.web.sources import register as register_sources

    register_search(app, rt.engine, templates, settings)
    register_sources(app, rt.engine, templates, settings)
    register_admin(app, rt.engine, templates, settings)
    from tingfeng.web.reports import register as register_reports

    register_reports(app, rt.engine, templates, settings)

    @app.get("/live", response_class=HTMLResponse)
    def live(request: Request) -> HTMLResponse:
        with rt.engine.connect() as conn:
            report = health_report(conn, list_sources(conn), datetime.now(UTC))
        return templates.TemplateResponse(
            request, "live.html", {"sources": report, "version": __version__}
        )

    return app
