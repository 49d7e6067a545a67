"""Administration of the hot-area categories (热点分类): the taxonomy the analysis labels with.

Every save puts a new version of the whole taxonomy in force (`save_taxonomy`: a new row of
`taxonomy_versions`, an audit entry); the ingest picks it up within half a minute and stored
posts keep their labels until `tingfeng reanalyze`. A refused edit shows the form again with
each problem beside it; legal but doubtful content (Taxonomy.lint) is shown under each category.
"""

from __future__ import annotations

from typing import Any

from fastapi import Body, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import select

from tingfeng.analyze.categories import Category, Taxonomy, TaxonomyError
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import TaxonomyVersion
from tingfeng.ingest.readings import current_taxonomy, save_taxonomy
from tingfeng.web.admin import AdminPages, back
from tingfeng.web.i18n import gettext

FIELDS = ("slug", "name_zh", "name_en", "description", "min_score", "min_keywords")


def versions(conn: Any, limit: int = 10) -> list[dict[str, Any]]:
    """The latest saved versions of the taxonomy, newest first."""
    rows = conn.execute(
        select(TaxonomyVersion.id, TaxonomyVersion.version, TaxonomyVersion.created_at,
               TaxonomyVersion.note)
        .order_by(TaxonomyVersion.id.desc())
        .limit(limit)
    ).all()  # fmt: skip
    return [
        {"id": r.id, "version": r.version, "created_at": r.created_at.isoformat(), "note": r.note}
        for r in rows
    ]


def lint_of(category: Category) -> list[str]:
    """Warnings about one category (its lint does not depend on the others)."""
    return Taxonomy(categories=(category,)).lint()


def form_values(category: Category) -> dict[str, Any]:
    """A category as the edit form shows it: keywords one per line as WORD=WEIGHT."""
    return {
        **{f: getattr(category, f) for f in FIELDS},
        "enabled": category.enabled,
        "keywords": "\n".join(f"{k}={w:g}" for k, w in category.keywords.items()),
        "exclude": "\n".join(category.exclude),
    }


def parse_form(values: dict[str, Any]) -> dict[str, Any]:
    """The form's text as category data; TaxonomyError lists every line that cannot be read."""
    problems: list[str] = []
    keywords: dict[str, float] = {}
    for number, line in enumerate(str(values["keywords"]).splitlines(), 1):
        if not line.strip():
            continue
        word, sep, weight = line.rpartition("=") if "=" in line else (line, "", "")
        try:
            keywords[word.strip()] = float(weight) if sep else 1.0
        except ValueError:
            problems.append(
                gettext("关键词第 %(n)s 行：“=”后应是权重数字，例如 贪污=2") % {"n": number}
            )
    numbers: dict[str, Any] = {}
    for name, kind in (("min_score", float), ("min_keywords", int)):
        try:
            numbers[name] = kind(str(values[name]).strip())
        except ValueError:
            problems.append(gettext("%(field)s 应是数字") % {"field": name})
    if problems:
        raise TaxonomyError(problems)
    return {
        "slug": str(values["slug"]).strip(),
        "name_zh": str(values["name_zh"]).strip(),
        "name_en": str(values["name_en"]).strip(),
        "description": str(values["description"]).strip(),
        "enabled": bool(values["enabled"]),
        **numbers,
        "keywords": keywords,
        "exclude": [p.strip() for p in str(values["exclude"]).splitlines() if p.strip()],
    }


def _problems(exc: TaxonomyError) -> list[str]:
    return list(exc.problems)


def register(app: FastAPI, pages: AdminPages) -> None:
    def categories_page(request: Request, editing: dict[str, Any] | None = None) -> HTMLResponse:
        def work(conn: Any) -> dict[str, Any]:
            taxonomy = current_taxonomy(conn)
            return {
                "taxonomy": taxonomy,
                "rows": [
                    {"category": c, "form": form_values(c), "lint": lint_of(c)}
                    for c in taxonomy.categories
                ],
                "versions": versions(conn),
            }

        context = pages.read(work)
        context["editing"] = editing = editing or {}
        # Problems with no form on the page to stand beside (a category gone meanwhile).
        slugs = {"", *context["taxonomy"].slugs}
        context["stray"] = editing.get("errors") if editing.get("slug") not in slugs else None
        return pages.render(request, "admin_categories.html", "/admin/categories", context,
                            422 if editing else 200)  # fmt: skip

    def edit(request: Request, slug: str | None, values: dict[str, Any], note: str) -> Response:
        """Add (slug None) or replace a category from the form; errors shown in place."""
        try:
            with write_transaction(pages.engine) as conn:
                data = parse_form(values)
                taxonomy = current_taxonomy(conn)
                if slug is None:
                    taxonomy = taxonomy.add_category(data)
                else:
                    taxonomy = taxonomy.update_category(slug, **data)
                save_taxonomy(conn, taxonomy, note)
        except TaxonomyError as exc:
            editing = {"slug": slug or "", "values": values, "errors": _problems(exc)}
            return categories_page(request, editing)
        return back("/admin/categories", "saved" if slug else "added")

    def form(
        slug: str, name_zh: str, name_en: str, description: str, enabled: str,
        min_score: str, min_keywords: str, keywords: str, exclude: str,
    ) -> dict[str, Any]:  # fmt: skip
        return {"slug": slug, "name_zh": name_zh, "name_en": name_en, "description": description,
                "enabled": enabled == "on", "min_score": min_score, "min_keywords": min_keywords,
                "keywords": keywords, "exclude": exclude}  # fmt: skip

    @app.get("/admin/categories", response_class=HTMLResponse)
    def admin_categories(request: Request) -> HTMLResponse:
        """The categories in force with keywords and warnings; edit, add, remove."""
        return categories_page(request)

    @app.post("/admin/categories", response_model=None)
    def admin_category_add(
        request: Request,
        slug: str = Form(""), name_zh: str = Form(""), name_en: str = Form(""),
        description: str = Form(""), enabled: str = Form(""), min_score: str = Form("2"),
        min_keywords: str = Form("1"), keywords: str = Form(""), exclude: str = Form(""),
    ) -> Response:  # fmt: skip
        values = form(slug, name_zh, name_en, description, enabled, min_score, min_keywords,
                      keywords, exclude)  # fmt: skip
        return edit(request, None, values, f"add {slug.strip()} (web)")

    @app.post("/admin/categories/{slug}", response_model=None)
    def admin_category_save(
        request: Request,
        slug: str,
        new_slug: str = Form("", alias="slug"), name_zh: str = Form(""),
        name_en: str = Form(""), description: str = Form(""), enabled: str = Form(""),
        min_score: str = Form("2"), min_keywords: str = Form("1"), keywords: str = Form(""),
        exclude: str = Form(""),
    ) -> Response:  # fmt: skip
        values = form(new_slug, name_zh, name_en, description, enabled, min_score,
                      min_keywords, keywords, exclude)  # fmt: skip
        return edit(request, slug, values, f"edit {slug} (web)")

    @app.post("/admin/categories/{slug}/remove", response_model=None)
    def admin_category_remove(request: Request, slug: str) -> Response:
        try:
            with write_transaction(pages.engine) as conn:
                save_taxonomy(conn, current_taxonomy(conn).remove_category(slug),
                              f"remove {slug} (web)")  # fmt: skip
        except TaxonomyError as exc:
            return categories_page(request, {"slug": slug, "errors": _problems(exc)})
        return back("/admin/categories", "removed")

    # --- the API ------------------------------------------------------------------------

    def refused(exc: TaxonomyError) -> JSONResponse:
        return JSONResponse({"error": str(exc), "problems": _problems(exc)}, status_code=422)

    def change(work: Any, note: str, status: int = 200) -> Any:
        try:
            with write_transaction(pages.engine) as conn:
                taxonomy, result = work(current_taxonomy(conn))
                version = save_taxonomy(conn, taxonomy, note)
        except TaxonomyError as exc:
            return refused(exc)
        return JSONResponse({"version": version, **result}, status_code=status)

    @app.get("/api/v1/admin/categories")
    def api_admin_categories() -> dict[str, Any]:
        """The taxonomy in force: each category with its lint warnings, and recent versions."""

        def work(conn: Any) -> dict[str, Any]:
            taxonomy = current_taxonomy(conn)
            return {
                "version": taxonomy.version,
                "total": len(taxonomy.categories),
                "categories": [
                    {**c.model_dump(mode="json"), "lint": lint_of(c)} for c in taxonomy.categories
                ],
                "versions": versions(conn),
            }

        return pages.read(work)

    @app.post("/api/v1/admin/categories", status_code=201, response_model=None)
    def api_admin_category_add(body: dict[str, Any] = Body(...)) -> Any:
        """Add a category (the fields of docs/analysis-categories.md); a new version."""

        def work(taxonomy: Taxonomy) -> tuple[Taxonomy, dict[str, Any]]:
            new = taxonomy.add_category(body)
            return new, {"category": new.categories[-1].model_dump(mode="json")}

        return change(work, f"add {body.get('slug')} (api)", 201)

    @app.put("/api/v1/admin/categories/{slug}", response_model=None)
    def api_admin_category_save(slug: str, body: dict[str, Any] = Body(...)) -> Any:
        """Replace a category's fields (a missing field keeps its value); a new version."""

        def work(taxonomy: Taxonomy) -> tuple[Taxonomy, dict[str, Any]]:
            new = taxonomy.update_category(slug, **body)
            saved = new.category(str(body.get("slug") or slug))
            return new, {"category": saved.model_dump(mode="json")}

        return change(work, f"edit {slug} (api)")

    @app.delete("/api/v1/admin/categories/{slug}", response_model=None)
    def api_admin_category_remove(slug: str) -> Any:
        """Remove a category; labels already stored keep it until the posts are re-analysed."""
        return change(lambda t: (t.remove_category(slug), {"removed": slug}),
                      f"remove {slug} (api)")  # fmt: skip
