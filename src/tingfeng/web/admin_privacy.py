"""Administration of retention and pseudonymisation (数据保留与作者化名): tingfeng.privacy.

The page's form sets the policy; "dry run" counts what a pass with the form's values would do
without saving anything; "save and apply now" saves the values and runs a pass at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from starlette.datastructures import FormData

from tingfeng import privacy
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import Source
from tingfeng.settings import Settings
from tingfeng.web.admin import AdminPages, back
from tingfeng.web.guard import require_user
from tingfeng.web.i18n import N_, gettext

TRIGGERS = {
    "daily": N_("每日自动"),
    "manual": N_("手动"),
    "page": N_("管理页面"),
    "api": N_("接口"),
    "cli": N_("命令行"),
}


def _days(text: str, what: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise privacy.PrivacyError(
            gettext("%(what)s：“%(value)s”不是天数") % {"what": what, "value": text}
        ) from None


def policy_from_form(form: FormData) -> privacy.Policy:
    """The policy the page's form describes (source rows are `source_days_<id>`)."""
    sources: dict[int, int] = {}
    for name, value in form.multi_items():
        if name.startswith("source_days_") and name[12:].isdigit() and str(value).strip():
            days = _days(str(value), gettext("信源 %(id)s 的保留天数") % {"id": name[12:]})
            sources[int(name[12:])] = days or 0
    return privacy.Policy.of(
        {
            "retention_days": _days(str(form.get("retention_days") or ""), gettext("保留天数")),
            "source_retention_days": sources,
            "pseudonymize_after_days": _days(
                str(form.get("pseudonymize_after_days") or ""), gettext("化名天数")
            ),
            "daily": form.get("daily") == "on",
        }
    )


def register(app: FastAPI, pages: AdminPages, settings: Settings) -> None:
    def page(
        request: Request,
        *,
        policy: privacy.Policy | None = None,
        error: str | None = None,
    ) -> HTMLResponse:
        def work(conn: Any) -> dict[str, Any]:
            return {
                "saved": privacy.load_policy(conn),
                "last_run": privacy.last_run(conn),
                "sources": conn.execute(select(Source.id, Source.name).order_by(Source.id)).all(),
            }

        context = pages.read(work)
        context.update(
            policy=policy or context["saved"],
            error=error,
            at_ingest=settings.pseudonymize_authors_at_ingest,
            triggers=TRIGGERS,
        )
        return pages.render(request, "admin_privacy.html", "/admin/privacy", context,
                            422 if error else 200)  # fmt: skip

    async def submitted(request: Request) -> tuple[privacy.Policy | None, str | None]:
        try:
            return policy_from_form(await request.form()), None
        except privacy.PrivacyError as exc:
            return None, str(exc)

    def save(actor: Any, policy: privacy.Policy) -> None:
        with write_transaction(pages.engine) as conn:
            privacy.save_policy(conn, actor, policy)

    @app.get("/admin/privacy", response_class=HTMLResponse)
    def admin_privacy(request: Request) -> HTMLResponse:
        """The policy form, a dry run, "save and apply now", and the latest pass."""
        return page(request)

    @app.post("/admin/privacy", response_model=None)
    async def admin_privacy_save(request: Request) -> Response:
        policy, error = await submitted(request)
        if policy is None:
            return page(request, error=error)
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(save, require_user(request), policy)
        return back("/admin/privacy", "saved")

    @app.post("/admin/privacy/apply", response_model=None)
    async def admin_privacy_apply(request: Request) -> Response:
        """Save the form's policy and run a pass with it now."""
        policy, error = await submitted(request)
        if policy is None:
            return page(request, error=error)
        from starlette.concurrency import run_in_threadpool

        actor = require_user(request)
        await run_in_threadpool(save, actor, policy)
        await run_in_threadpool(
            lambda: privacy.apply(
                pages.engine, settings, actor=actor, trigger="page", policy=policy
            )
        )
        return back("/admin/privacy", "applied")

    # --- the API ------------------------------------------------------------------------

    @app.get("/api/v1/admin/privacy")
    def api_admin_privacy() -> dict[str, Any]:
        """The policy in force, the latest pass, and whether bylines are pseudonymised at ingest."""

        def work(conn: Any) -> dict[str, Any]:
            return {
                "policy": privacy.load_policy(conn).as_dict(),
                "last_run": privacy.last_run(conn),
                "pseudonymize_authors_at_ingest": settings.pseudonymize_authors_at_ingest,
            }

        return pages.read(work)

    def policy_of(body: dict[str, Any] | None) -> privacy.Policy | None:
        if not body:
            return None
        try:
            return privacy.Policy.of(body)
        except privacy.PrivacyError as exc:
            raise HTTPException(422, str(exc)) from exc

    @app.put("/api/v1/admin/privacy")
    def api_admin_privacy_save(
        request: Request, body: dict[str, Any] = Body(...)
    ) -> dict[str, Any]:
        """Replace the policy: retention_days, source_retention_days, pseudonymize_after_days,
        daily (docs/privacy.md)."""
        policy = policy_of(body) or privacy.Policy()
        save(require_user(request), policy)
        return {"policy": policy.as_dict()}

    @app.post("/api/v1/admin/privacy/dry-run")
    def api_admin_privacy_dry_run(body: dict[str, Any] | None = Body(None)) -> dict[str, Any]:
        """Count what a pass would do now, with the policy given (else the one in force)."""
        given = policy_of(body)

        def work(conn: Any) -> dict[str, Any]:
            policy = given or privacy.load_policy(conn)
            found = privacy.preview(conn, policy, datetime.now(UTC))
            return {**found.as_dict(), "policy": policy.as_dict()}

        return pages.read(work)

    @app.post("/api/v1/admin/privacy/apply")
    def api_admin_privacy_apply(request: Request) -> dict[str, Any]:
        """Run a pass now with the policy in force; recorded in the audit log."""
        result = privacy.apply(pages.engine, settings, actor=require_user(request), trigger="api")
        return {**result.as_dict(), "policy": result.policy}
