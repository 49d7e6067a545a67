"""Search (信息检索): the page with the query language and filters, a post's detail, export."""

from __future__ import annotations

import html
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy import select

from tingfeng.db.models import Source
from tingfeng.search.query import QueryError
from tingfeng.search.service import count, search
from tingfeng.settings import Settings


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    @app.get("/search", response_class=HTMLResponse)
    def search_page(
        request: Request, q: str = "", sort: str = "newest", page: int = Query(1, ge=1)
    ) -> HTMLResponse:
        hits: list[Any] = []
        error = None
        total = None
        if q.strip():
            with engine.connect() as conn:
                try:
                    total = count(conn, q)
                    hits = search(conn, q, sort=sort, limit=20, offset=(page - 1) * 20).hits
                except QueryError as exc:
                    error = str(exc)
        names = {}
        with engine.connect() as conn:
            names = dict(conn.execute(select(Source.id, Source.name)).all())
        rows = [
            {"hit": h, "snippet": Markup(h.snippet_html), "source": names.get(h.source_id, "?")}
            for h in hits
        ]
        return templates.TemplateResponse(
            request,
            "search.html",
            {
                "q": q,
                "rows": rows,
                "error": error,
                "total": total,
                "page": page,
                "sort": sort,
                "escape": html.escape,
            },
        )
