"""Signing in and out, changing one's password, and the session the pages' scripts use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from tingfeng.db.engine import write_transaction
from tingfeng.office.people import OfficeError
from tingfeng.office.signin import change_password, check_password_first, sign_in, sign_out
from tingfeng.settings import Settings
from tingfeng.web.guard import SESSION_COOKIE, require_user


def _safe_next(target: str | None) -> str:
    """Only a path on this site: `next` must not send someone to another site after sign-in."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    secure = settings.public_url.startswith("https://")

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return templates.TemplateResponse(
            request, "login.html", {"next": _safe_next(next), "error": None, "username": ""}
        )

    @app.post("/login", response_model=None)
    def login(
        request: Request,
        username: str = Form(""),
        password: str = Form(""),
        next: str = Form("/"),
    ) -> Response:
        error = None
        # The slow argon2 check first, outside the write transaction (see PasswordCheck).
        with engine.connect() as conn:
            check = check_password_first(conn, username, password)
        with write_transaction(engine) as conn:
            # Caught inside the transaction, so the failure count and a lock are kept.
            try:
                session = sign_in(
                    conn, settings, username, password, datetime.now(UTC), check=check
                )
            except OfficeError as exc:
                error = str(exc)
        if error is not None:
            return templates.TemplateResponse(
                request, "login.html",
                {"next": _safe_next(next), "error": error, "username": username},
                status_code=401,
            )  # fmt: skip
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(
            SESSION_COOKIE, session.token, httponly=True, samesite="lax", secure=secure,
            max_age=settings.session_max_hours * 3600, path="/",
        )  # fmt: skip
        return response

    @app.post("/logout", response_model=None)
    def logout(request: Request) -> Response:
        with write_transaction(engine) as conn:
            sign_out(conn, request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/account/password", response_class=HTMLResponse)
    def password_page(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "password.html", {"error": None})

    @app.post("/account/password", response_model=None)
    def password_change(
        request: Request, old: str = Form(""), new: str = Form(""), again: str = Form("")
    ) -> Response:
        person = require_user(request)
        error = None
        if new != again:
            error = "两次输入的新密码不一致 (the new passwords differ)."
        else:
            try:
                with write_transaction(engine) as conn:
                    change_password(conn, person, old, new, datetime.now(UTC))
            except OfficeError as exc:
                error = str(exc)
        if error:
            return templates.TemplateResponse(
                request, "password.html", {"error": error}, status_code=422
            )
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/api/v1/session")
    def session_info(request: Request) -> dict[str, Any]:
        """Who is signed in, and the CSRF token the pages' scripts send with changes."""
        person = require_user(request)
        return {"user": person.as_dict(), "csrf_token": request.state.csrf}
