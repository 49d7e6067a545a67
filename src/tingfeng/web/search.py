"""Search (信息检索): the page with the query language and filters, a post's detail, export.

The page, the search API and the export read the same parameters (`tingfeng.web.search_form`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy import Connection, select

from tingfeng.cases.evidence import CATEGORY_LABELS as EVIDENCE_LABELS
from tingfeng.db.models import Source, Topic
from tingfeng.ingest.readings import current_taxonomy, readings_of
from tingfeng.search import export as exporting
from tingfeng.search.detail import PostNotFound, events_of, post_detail
from tingfeng.search.query import QueryError
from tingfeng.search.service import SearchFilters, count, group_keywords, search
from tingfeng.settings import Settings
from tingfeng.web import local_formatter
from tingfeng.web.guard import roles_for
from tingfeng.web.i18n import N_, current_language, gettext
from tingfeng.web.labels import EMOTION_ZH, LEVEL_ZH, POLARITY_ZH
from tingfeng.web.openapi_errors import CSV, XLSX, downloads
from tingfeng.web.search_form import Searched, SearchRequest, error_at, split_values

PAGE_SIZE = 20
MAX_PAGE = 500  # deeper pages: narrow the search (or export it)
QUICK_LABELS = {"": N_("不限"), "24h": N_("近24小时"), "7d": N_("近7天"), "30d": N_("近30天")}
SORT_LABELS = {"newest": N_("最新发布"), "relevance": N_("相关度"), "oldest": N_("最早发布")}
LANG_LABELS = {"zh": N_("中文"), "en": N_("英文"), "other": N_("其他")}
VERIFY_LABELS = {"": N_("不限"), "true": N_("需核实"), "false": N_("无需核实")}
KIND_LABELS = {
    "article": N_("文章"),
    "post": N_("帖文"),
    "comment": N_("评论"),
    "repost": N_("转发"),
}
REGION_ORIGIN_LABELS = {"text": N_("文中提及"), "source": N_("信源所在地")}
DUP_KIND_LABELS = {"original": N_("原创"), "exact": N_("完全重复"), "near": N_("近似重复")}
JOINED_LABELS = {
    "new": N_("首条信息"),
    "repost": N_("转发并入"),
    "duplicate": N_("重复并入"),
    "content": N_("内容相近并入"),
    "manual": N_("人工并入"),
}
EXPORT_HEADERS = {
    "id": N_("编号"),
    "time": N_("发布时间"),
    "source": N_("信源名称"),
    "title": N_("标题"),
    "text": N_("正文"),
    "url": N_("链接"),
    "author": N_("作者"),
    "polarity": N_("情感倾向"),
    "emotion": N_("情绪"),
    "categories": N_("分类"),
    "regions": N_("地域"),
    "event": N_("所属事件"),
}


def _category_names(conn: Connection) -> dict[str, str]:
    """Category slug → its name in the request's language (the taxonomy names both)."""
    english = current_language.get() == "en"
    return {
        c.slug: (c.name_en if english else c.name_zh) for c in current_taxonomy(conn).categories
    }


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    tz = settings.default_timezone
    local = local_formatter(tz)
    local_s = local_formatter(tz, "%Y-%m-%d %H:%M:%S")

    def api_filters(conn: Connection, req: SearchRequest) -> SearchFilters:
        try:
            return req.filters(conn, tz, datetime.now(UTC))
        except (QueryError, ValueError) as exc:
            # QuerySyntaxError of `where` is a ValueError: its message names the position.
            raise HTTPException(422, str(exc)) from exc

    # --- the page ------------------------------------------------------------------------------

    @app.get("/search", response_class=HTMLResponse)
    def search_page(
        request: Request, req: Searched, page: Annotated[int, Query(ge=1)] = 1
    ) -> HTMLResponse:
        page = min(page, MAX_PAGE)
        # `?lang=` is the pages' language switch here; the form names the posts' one post_lang.
        req.langs = split_values(request.query_params.getlist("post_lang"))
        if req.sort not in SORT_LABELS:
            req.sort = "newest"
        errors: dict[str, dict[str, Any]] = {}
        rows: list[dict[str, Any]] = []
        total: int | None = None
        with engine.connect() as conn:
            filters = None
            try:
                filters = req.filters(conn, tz, datetime.now(UTC))
            except QueryError as exc:  # a `where` filter reading too many posts
                errors["where"] = error_at(req.where, str(exc))
            except ValueError as exc:
                position = getattr(exc, "position", None)
                if position is not None:  # QuerySyntaxError of the `where` filter
                    errors["where"] = error_at(req.where, str(exc), position)
                else:
                    errors["filters"] = {"message": str(exc), "position": None}
            if req.q.strip() and filters is not None:
                try:
                    total = count(conn, req.q, filters)
                    hits = search(conn, req.q, filters, sort=req.sort, limit=PAGE_SIZE,
                                  offset=(page - 1) * PAGE_SIZE).hits  # fmt: skip
                    rows = _rows(conn, hits)
                except QueryError as exc:
                    errors["q"] = error_at(req.q, str(exc))
            choices = _choices(conn)
        pages = -(-total // PAGE_SIZE) if total else 0
        return templates.TemplateResponse(
            request,
            "search.html",
            {
                "req": req, "rows": rows, "total": total, "page": page,
                "pages": min(pages, MAX_PAGE), "errors": errors, "choices": choices,
                "page_url": lambda n: req.url("/search", page=n),
                "export_url": lambda fmt: req.url("/api/v1/search/export", format=fmt),
                "max_export": exporting.MAX_EXPORT_ROWS, "local": local,
            },
        )  # fmt: skip

    def _rows(conn: Connection, hits: list[Any]) -> list[dict[str, Any]]:
        ids = [h.id for h in hits]
        readings = readings_of(conn, ids)
        events = events_of(conn, ids)
        sources = dict(conn.execute(select(Source.id, Source.name)).all())
        categories = _category_names(conn)
        rows = []
        for h in hits:
            reading = readings.get(h.id)
            rows.append(
                {
                    "hit": h,
                    # Built by the search service: escaped text with <mark> around the terms.
                    "snippet": Markup(h.snippet_html),
                    "source": sources.get(h.source_id, "?"),
                    "time": local(h.published_at.isoformat()) if h.published_at else "",
                    "reading": reading,
                    "categories": [
                        categories.get(c["slug"], c["slug"])
                        for c in (reading or {}).get("categories", [])
                    ],
                    "regions": [r["name"] for r in (reading or {}).get("regions", [])],
                    "event": events.get(h.id),
                    "repost": h.dup_group is not None and h.dup_group != h.id,
                }
            )
        return rows

    def _choices(conn: Connection) -> dict[str, Any]:
        return {
            "sources": conn.execute(select(Source.id, Source.name).order_by(Source.name)).all(),
            "topics": conn.execute(select(Topic.id, Topic.name).order_by(Topic.name)).all(),
            "categories": _category_names(conn),
            "polarities": {k: v for k, v in POLARITY_ZH.items() if k != "unknown"},
            "emotions": {k: v for k, v in EMOTION_ZH.items() if k != "unknown"},
            "levels": LEVEL_ZH,
            "langs": LANG_LABELS,
            "quick": QUICK_LABELS,
            "verify": VERIFY_LABELS,
            "sorts": SORT_LABELS,
        }

    # --- a post's detail -----------------------------------------------------------------------

    @app.get("/posts/{post_id}", response_class=HTMLResponse)
    def post_page(request: Request, post_id: int) -> HTMLResponse:
        with engine.connect() as conn:
            try:
                post = post_detail(conn, post_id)
            except PostNotFound:
                return templates.TemplateResponse(
                    request, "error.html",
                    {"message": gettext("没有编号为 %(id)s 的信息。") % {"id": post_id},
                     "back": "/search"},
                    status_code=404,
                )  # fmt: skip
            categories = _category_names(conn)
        me = request.state.user
        return templates.TemplateResponse(
            request,
            "post.html",
            {
                "post": post, "local": local, "local_s": local_s, "categories": categories,
                "polarity_labels": POLARITY_ZH, "emotion_labels": EMOTION_ZH,
                "level_labels": LEVEL_ZH, "lang_labels": LANG_LABELS,
                "origin_labels": REGION_ORIGIN_LABELS, "dup_labels": DUP_KIND_LABELS,
                "joined_labels": JOINED_LABELS, "evidence_labels": EVIDENCE_LABELS,
                "kind_labels": KIND_LABELS,
                "can_open_case": me is not None and me.role in roles_for("POST", "/cases/open"),
            },
        )  # fmt: skip

    @app.get("/api/v1/posts/{post_id}")
    def api_post(post_id: int) -> dict[str, Any]:
        """One post with its reading, duplicate group, event(s) and evidence. Collected fields
        (title, text, author, url, html) are untrusted as collected: escape or sanitise them."""
        with engine.connect() as conn:
            try:
                return post_detail(conn, post_id)
            except PostNotFound as exc:
                raise HTTPException(404, str(exc)) from exc

    @app.get("/api/v1/posts/{post_id}/reading")
    def post_reading(post_id: int) -> dict[str, Any]:
        """What the analysis stages read in one post."""
        with engine.connect() as conn:
            reading = readings_of(conn, [post_id]).get(post_id)
        if reading is None:
            raise HTTPException(
                404, f"post {post_id} has no reading (not stored, or not analysed yet)"
            )
        return reading

    # --- the API -------------------------------------------------------------------------------

    @app.get("/api/v1/search")
    def api_search(
        req: Searched,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
        offset: Annotated[int, Query(ge=0)] = 0,
        count_only: bool = False,
    ) -> dict[str, Any]:
        """Search; `where` adds a filter in the topic language, `topic_id` a saved topic,
        `level` the level of the posts' events. Returns one page of hits and the total."""
        with engine.connect() as conn:
            filters = api_filters(conn, req)
            try:
                if count_only:
                    return {"count": count(conn, req.q, filters)}
                page = search(conn, req.q, filters, sort=req.sort, limit=limit, offset=offset)
                total = count(conn, req.q, filters)
            except QueryError as exc:
                raise HTTPException(422, str(exc)) from exc
            readings = readings_of(conn, [h.id for h in page.hits])
        return {
            "query": req.q,
            "total": total,
            "hits": [
                {
                    "id": h.id,
                    "source_id": h.source_id,
                    "title": h.title,
                    "url": h.url,
                    "author": h.author,
                    "lang": h.lang,
                    "published_at": h.published_at.isoformat() if h.published_at else None,
                    "dup_group": h.dup_group,
                    "snippet_html": h.snippet_html,
                    "reading": readings.get(h.id),
                }
                for h in page.hits
            ],
        }

    @app.get("/api/v1/search/export", response_model=None, responses=downloads(CSV, XLSX))
    def api_search_export(
        req: Searched, format: Annotated[str, Query(pattern="^(csv|xlsx)$")] = "csv"
    ) -> Response:
        """The matching posts as a CSV (UTF-8 with BOM) or Excel file, at most
        MAX_EXPORT_ROWS (10,000) of them; `X-Export-Total` and `X-Export-Truncated` say when the
        file holds fewer than matched (the Excel file says so on its second sheet too)."""
        now = datetime.now(UTC)
        with engine.connect() as conn:
            filters = api_filters(conn, req)
            categories = _category_names(conn)
            try:
                result = exporting.export_rows(
                    conn, req.q, filters, sort=req.sort, tz=tz,
                    label=lambda kind, value: _label(kind, value, categories),
                    limit=exporting.MAX_EXPORT_ROWS,
                )  # fmt: skip
            except QueryError as exc:
                raise HTTPException(422, str(exc)) from exc
        result.notes = _notes(req, result, now)
        headers = [gettext(EXPORT_HEADERS[c]) for c in exporting.COLUMNS]
        name = _file_name(req.q, now.astimezone(ZoneInfo(tz)), format, result.truncated)
        if format == "xlsx":
            body = exporting.to_xlsx(result, headers, gettext("检索结果"), gettext("说明"))
            media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        else:
            body, media = exporting.to_csv(result, headers), "text/csv; charset=utf-8"
        return Response(
            body,
            media_type=media,
            headers={
                "Content-Disposition": (
                    f"attachment; filename=\"{name['ascii']}\"; filename*=UTF-8''{name['utf8']}"
                ),
                "X-Export-Rows": str(len(result.rows)),
                "X-Export-Total": str(result.total),
                "X-Export-Truncated": "true" if result.truncated else "false",
            },
        )

    def _label(kind: str, value: str, categories: dict[str, str]) -> str:
        table = {"polarity": POLARITY_ZH, "emotion": EMOTION_ZH, "level": LEVEL_ZH}.get(kind)
        if kind == "category":
            return categories.get(value, value)
        return gettext(table[value]) if table and value in table else value

    def _notes(
        req: SearchRequest, result: exporting.Export, now: datetime
    ) -> list[tuple[str, str]]:
        notes = [
            (gettext("检索式"), req.q),
            (gettext("筛选条件"), urlencode([p for p in req.params() if p[0] != "q"])),
            (gettext("导出时间"), local_s(now.isoformat()) + f" ({tz})"),
            (gettext("导出条数"), str(len(result.rows))),
            (gettext("命中总数"), str(result.total)),
        ]
        if result.truncated:
            notes.append(
                (gettext("注意"),
                 gettext("结果超过 %(max)s 条，仅导出了排在前面的 %(max)s 条：请缩小检索范围。")
                 % {"max": f"{exporting.MAX_EXPORT_ROWS:,}"})
            )  # fmt: skip
        return notes

    @app.get("/api/v1/keywords")
    def api_keywords(
        q: str, k: Annotated[int, Query(ge=1, le=50)] = 10,
        posts: Annotated[int, Query(ge=1, le=5000)] = 2000,
    ) -> dict[str, Any]:  # fmt: skip
        """Keywords of the group of posts matching `q` (the newest `posts` of them)."""
        with engine.connect() as conn:
            try:
                words = group_keywords(conn, q, k=k, posts=posts)
            except QueryError as exc:
                raise HTTPException(422, str(exc)) from exc
        return {"query": q, "keywords": [{"word": w, "weight": round(x, 4)} for w, x in words]}


_UNSAFE_NAME = re.compile(r'[\x00-\x1f\\/:*?"<>|\s]+')


def _file_name(query: str, now: datetime, fmt: str, truncated: bool) -> dict[str, str]:
    """`search-20240305-1405.csv` for old clients, `检索-医院投诉-20240305-1405.csv` (RFC 6266);
    `now` in the office's time zone."""
    stamp = now.strftime("%Y%m%d-%H%M")
    cut = f"-first{exporting.MAX_EXPORT_ROWS}" if truncated else ""
    words = _UNSAFE_NAME.sub("_", query).strip("_.")[:30]
    return {
        "ascii": f"search-{stamp}{cut}.{fmt}",
        "utf8": quote(f"{gettext('检索')}-{words}-{stamp}{cut}.{fmt}" if words else
                      f"{gettext('检索')}-{stamp}{cut}.{fmt}"),
    }  # fmt: skip
