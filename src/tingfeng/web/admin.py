"""Administration (系统管理): users, departments, categories, retention, pseudonymisation.

Pages under /admin and the JSON API under /api/v1/admin, for the administrator only (the
guard's READ_ROLES and WRITE_ROLES). The pages are plain forms that post and redirect back
with a notice; a refused change shows the page again with the reason beside the form that
caused it. Every change is written to the audit log by the services
(`tingfeng.office.accounts`, `tingfeng.ingest.readings.save_taxonomy`, `tingfeng.privacy`).
This module holds users and departments; categories and privacy have modules of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from tingfeng.db.engine import write_transaction
from tingfeng.office import accounts
from tingfeng.problems import ProblemsError
from tingfeng.settings import Settings
from tingfeng.web import local_formatter
from tingfeng.web.guard import require_user
from tingfeng.web.i18n import N_
from tingfeng.web.labels import ROLE_ZH

T = TypeVar("T")

TABS: list[tuple[str, str]] = [
    ("/admin/users", N_("用户")),
    ("/admin/departments", N_("部门")),
    ("/admin/categories", N_("热点分类")),
    ("/admin/privacy", N_("数据保留与作者化名")),
]
ROLE_LABELS = ROLE_ZH
# What a redirect after a change says (?ok=…); anything else in the URL is ignored.
NOTICES: dict[str, str] = {
    "added": N_("已添加。"),
    "saved": N_("已保存。"),
    "password": N_("密码已重置：该用户已被登出，需用新密码登录。"),
    "unlocked": N_("已解除锁定。"),
    "disabled": N_("已停用：该用户的登录和 API 令牌已失效。"),
    "enabled": N_("已启用。"),
    "removed": N_("已删除。"),
    "applied": N_("已执行，结果见“上次执行”。"),
}


class AdminPages:
    """What every administration page shares: the tabs, the notice, errors in place."""

    def __init__(self, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
        self.engine = engine
        self.templates = templates
        self.local = local_formatter(settings.default_timezone)

    def render(
        self,
        request: Request,
        name: str,
        active: str,
        context: dict[str, Any],
        status_code: int = 200,
    ) -> HTMLResponse:
        ok = request.query_params.get("ok", "")
        return self.templates.TemplateResponse(
            request,
            name,
            {
                "tabs": TABS,
                "active": active,
                "notice": NOTICES.get(ok) if status_code == 200 else None,
                "local": self.local,
                "role_labels": ROLE_LABELS,
                **context,
            },
            status_code=status_code,
        )

    def write(self, work: Callable[[Any], T]) -> T:
        """`work(conn)` in a write transaction; refused input becomes a 422 for the API."""
        try:
            with write_transaction(self.engine) as conn:
                return work(conn)
        except ProblemsError as exc:
            raise HTTPException(422, str(exc)) from exc

    def read(self, work: Callable[[Any], T]) -> T:
        with self.engine.connect() as conn:
            return work(conn)


def back(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?ok={notice}", status_code=303)


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=200)
    display_name: str | None = Field(None, max_length=200)
    role: str = "analyst"
    department: int | str | None = None
    email: str | None = None
    phone: str | None = None


class UserPatch(BaseModel):
    display_name: str | None = Field(None, max_length=200)
    role: str | None = None
    department: int | str | None = None
    email: str | None = None
    phone: str | None = None
    active: bool | None = None


class PasswordIn(BaseModel):
    password: str = Field(min_length=1, max_length=200)


class DepartmentIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    parent: int | str | None = None


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    """Adds the pages and API routes of this area."""
    pages = AdminPages(engine, templates, settings)
    _register_people(app, pages)
    from tingfeng.web.admin_categories import register as register_categories
    from tingfeng.web.admin_privacy import register as register_privacy

    register_categories(app, pages)
    register_privacy(app, pages, settings)


def _now() -> datetime:
    return datetime.now(UTC)


def _register_people(app: FastAPI, pages: AdminPages) -> None:
    def users_context(conn: Any) -> dict[str, Any]:
        return {
            "users": accounts.list_accounts(conn, _now()),
            "departments": accounts.flatten(accounts.department_tree(conn)),
        }

    def users_page(
        request: Request, *, error: str | None = None, error_for: Any = None,
        form: dict[str, Any] | None = None,
    ) -> HTMLResponse:  # fmt: skip
        context = pages.read(users_context)
        context.update(error=error, error_for=error_for, form=form or {})
        return pages.render(request, "admin_users.html", "/admin/users", context,
                            422 if error else 200)  # fmt: skip

    def attempt(
        request: Request, work: Callable[[Any], Any], notice: str, error_for: Any,
        form: dict[str, Any] | None = None,
    ) -> Response:  # fmt: skip
        try:
            with write_transaction(pages.engine) as conn:
                work(conn)
        except ProblemsError as exc:
            return users_page(request, error=str(exc), error_for=error_for, form=form)
        return back("/admin/users", notice)

    @app.get("/admin", response_class=RedirectResponse)
    def admin_home() -> RedirectResponse:
        return RedirectResponse("/admin/users", status_code=303)

    # --- users: the page ----------------------------------------------------------------

    @app.get("/admin/users", response_class=HTMLResponse)
    def admin_users(request: Request) -> HTMLResponse:
        """Every account: role, department, locked or disabled; add, change, reset, unlock."""
        return users_page(request)

    @app.post("/admin/users", response_model=None)
    def admin_user_add(
        request: Request,
        username: str = Form(""),
        password: str = Form(""),
        display_name: str = Form(""),
        role: str = Form("analyst"),
        department: str = Form(""),
        email: str = Form(""),
        phone: str = Form(""),
    ) -> Response:
        actor = require_user(request)
        form = {"username": username, "display_name": display_name, "role": role,
                "department": department, "email": email, "phone": phone}  # fmt: skip
        return attempt(
            request,
            lambda conn: accounts.create_account(
                conn,
                actor,
                username,
                password,
                display_name=display_name,
                role=role,
                department=department,
                email=email,
                phone=phone,
            ),
            "added",
            "add",
            form,
        )

    @app.post("/admin/users/{user_id}", response_model=None)
    def admin_user_change(
        request: Request,
        user_id: int,
        display_name: str = Form(""),
        role: str = Form(""),
        department: str = Form(""),
        email: str = Form(""),
        phone: str = Form(""),
    ) -> Response:
        actor = require_user(request)
        return attempt(
            request,
            lambda conn: accounts.change_account(
                conn,
                actor,
                user_id,
                display_name=display_name,
                role=role or None,
                department=department,
                email=email,
                phone=phone,
            ),
            "saved",
            user_id,
        )

    @app.post("/admin/users/{user_id}/password", response_model=None)
    def admin_user_password(request: Request, user_id: int, password: str = Form("")) -> Response:
        actor = require_user(request)
        return attempt(
            request,
            lambda conn: accounts.reset_password(conn, actor, user_id, password, _now()),
            "password",
            user_id,
        )

    @app.post("/admin/users/{user_id}/unlock", response_model=None)
    def admin_user_unlock(request: Request, user_id: int) -> Response:
        actor = require_user(request)
        return attempt(
            request, lambda conn: accounts.unlock(conn, actor, user_id), "unlocked", user_id
        )

    @app.post("/admin/users/{user_id}/disable", response_model=None)
    def admin_user_disable(request: Request, user_id: int) -> Response:
        actor = require_user(request)
        return attempt(
            request,
            lambda conn: accounts.set_active(conn, actor, user_id, False),
            "disabled",
            user_id,
        )

    @app.post("/admin/users/{user_id}/enable", response_model=None)
    def admin_user_enable(request: Request, user_id: int) -> Response:
        actor = require_user(request)
        return attempt(
            request,
            lambda conn: accounts.set_active(conn, actor, user_id, True),
            "enabled",
            user_id,
        )

    # --- users: the API -----------------------------------------------------------------

    @app.get("/api/v1/admin/users")
    def api_admin_users(
        role: str | None = None,
        department_id: int | None = None,
        active: bool | None = None,
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        """Accounts with their department and lock state; filter by role, department, active."""
        users = pages.read(lambda conn: accounts.list_accounts(conn, _now()))
        users = [
            u for u in users
            if (role is None or u["role"] == role)
            and (department_id is None or u["department_id"] == department_id)
            and (active is None or u["active"] == active)
        ]  # fmt: skip
        return {"total": len(users), "users": users[offset : offset + limit]}

    def account(conn: Any, user_id: int) -> dict[str, Any]:
        found = [u for u in accounts.list_accounts(conn, _now()) if u["id"] == user_id]
        if not found:
            raise HTTPException(404, f"No user with id {user_id}.")
        return found[0]

    @app.post("/api/v1/admin/users", status_code=201)
    def api_admin_user_add(request: Request, body: UserIn) -> dict[str, Any]:
        """Add a person who can sign in at once with the password given."""
        actor = require_user(request)

        def work(conn: Any) -> dict[str, Any]:
            person = accounts.create_account(
                conn, actor, body.username, body.password, display_name=body.display_name,
                role=body.role, department=body.department, email=body.email, phone=body.phone,
            )  # fmt: skip
            return account(conn, person.id)

        return pages.write(work)

    @app.patch("/api/v1/admin/users/{user_id}")
    def api_admin_user_change(request: Request, user_id: int, body: UserPatch) -> dict[str, Any]:
        """Change role, department, name, contact details; `active: false` disables."""
        actor = require_user(request)
        values = body.model_dump(exclude_unset=True)
        active = values.pop("active", None)

        def work(conn: Any) -> dict[str, Any]:
            account(conn, user_id)
            if values:
                accounts.change_account(conn, actor, user_id, **values)
            if active is not None:
                accounts.set_active(conn, actor, user_id, active)
            return account(conn, user_id)

        return pages.write(work)

    @app.post("/api/v1/admin/users/{user_id}/password")
    def api_admin_user_password(request: Request, user_id: int, body: PasswordIn) -> dict[str, Any]:
        """Set a new password; the person's sessions end and a lock-out is lifted."""
        actor = require_user(request)

        def work(conn: Any) -> dict[str, Any]:
            account(conn, user_id)
            accounts.reset_password(conn, actor, user_id, body.password, _now())
            return account(conn, user_id)

        return pages.write(work)

    @app.post("/api/v1/admin/users/{user_id}/unlock")
    def api_admin_user_unlock(request: Request, user_id: int) -> dict[str, Any]:
        actor = require_user(request)

        def work(conn: Any) -> dict[str, Any]:
            account(conn, user_id)
            accounts.unlock(conn, actor, user_id)
            return account(conn, user_id)

        return pages.write(work)

    # --- departments --------------------------------------------------------------------

    def departments_page(
        request: Request, error: str | None = None, form: dict[str, Any] | None = None
    ) -> HTMLResponse:
        tree = pages.read(accounts.department_tree)
        context = {"tree": tree, "departments": accounts.flatten(tree), "error": error,
                   "form": form or {}}  # fmt: skip
        return pages.render(request, "admin_departments.html", "/admin/departments", context,
                            422 if error else 200)  # fmt: skip

    @app.get("/admin/departments", response_class=HTMLResponse)
    def admin_departments(request: Request) -> HTMLResponse:
        """The departments as a tree, with how many active people each has; add one."""
        return departments_page(request)

    @app.post("/admin/departments", response_model=None)
    def admin_department_add(
        request: Request, name: str = Form(""), parent: str = Form("")
    ) -> Response:
        actor = require_user(request)
        try:
            with write_transaction(pages.engine) as conn:
                accounts.create_department(conn, actor, name, parent or None)
        except ProblemsError as exc:
            return departments_page(request, str(exc), {"name": name, "parent": parent})
        return back("/admin/departments", "added")

    @app.get("/api/v1/admin/departments")
    def api_admin_departments() -> dict[str, Any]:
        """The departments as a tree (children nested), and how many there are."""
        tree = pages.read(accounts.department_tree)
        return {"total": len(accounts.flatten(tree)), "departments": tree}

    @app.post("/api/v1/admin/departments", status_code=201)
    def api_admin_department_add(request: Request, body: DepartmentIn) -> dict[str, Any]:
        actor = require_user(request)

        def work(conn: Any) -> dict[str, Any]:
            department_id = accounts.create_department(conn, actor, body.name, body.parent)
            flat = accounts.flatten(accounts.department_tree(conn))
            node = next(d for d in flat if d["id"] == department_id)
            return {k: v for k, v in node.items() if k != "children"}

        return pages.write(work)
