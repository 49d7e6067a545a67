"""Who may call what: sign-in, CSRF and the role of every endpoint, in one table.

Every route passes through `guard` (a dependency of the whole application). A route that is
not in PUBLIC needs a signed-in person: a session cookie (pages, and the pages' own scripts)
or a personal API token (`Authorization: Bearer tf_…`, scripts). A request that changes
something with a session cookie must also carry the session's CSRF token (header
`X-CSRF-Token` or form field `csrf_token`) and, when the browser sends one, an Origin of this
site. Reading is open to every role; each route that changes something names the roles that
may call it in WRITE_ROLES, and one missing from it is refused to everyone but the
administrator, so a new endpoint is closed until someone decides who may use it. Department
checks are the services' (a handler of 卫健局 acting on a 城管局 case is refused there).
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse

from tingfeng.office.people import Person

SESSION_COOKIE = "tf_session"
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
STAFF = frozenset({"admin", "approver", "handler", "analyst", "liaison"})
EVERYONE = STAFF | {"viewer"}

# (method, route path) open without signing in; each authenticates otherwise or is public.
PUBLIC: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/healthz"),
        # Probes and metrics (tingfeng.web.health): /metrics checks its own credentials.
        ("GET", "/livez"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        # The pages' front-end libraries (ECharts), for the login page and the board too.
        ("GET", "/static/vendor/{name}"),
        ("GET", "/login"),
        ("POST", "/login"),
        # Push API: the source's own token, checked by the route.
        ("POST", "/api/v1/sources/{source_id}/posts"),
        # Acknowledging from a message: the signed link is the credential.
        ("GET", "/alerts/ack/{token}"),
        ("POST", "/alerts/ack/{token}"),
        # The public message board, and its private follow links.
        ("GET", "/board"),
        ("POST", "/board"),
        ("GET", "/board/m/{token}"),
    }
)

_OFFICE = frozenset({"admin", "analyst"})
_LEAD = frozenset({"admin", "analyst", "approver"})
WRITE_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/logout"): EVERYONE,
    ("POST", "/account/password"): EVERYONE,
    ("POST", "/api/v1/inbox/read"): EVERYONE,
    ("POST", "/api/v1/leads"): STAFF,
    ("POST", "/api/v1/topics"): _OFFICE,
    ("PATCH", "/api/v1/topics/{topic_id}"): _OFFICE,
    ("DELETE", "/api/v1/topics/{topic_id}"): _OFFICE,
    ("POST", "/api/v1/topics/preview"): STAFF,
    ("POST", "/api/v1/events/{event_id}/merge"): _LEAD,
    ("POST", "/api/v1/events/{event_id}/split"): _LEAD,
    ("POST", "/api/v1/events/{event_id}/grade"): _LEAD,
    ("POST", "/api/v1/duty/shifts"): frozenset({"admin", "approver"}),
    ("PATCH", "/api/v1/duty/shifts/{ref}"): frozenset({"admin", "approver"}),
    ("DELETE", "/api/v1/duty/shifts/{ref}"): frozenset({"admin", "approver"}),
    ("POST", "/api/v1/duty/swaps"): _LEAD,
    ("POST", "/api/v1/duty/reports"): STAFF,
    ("POST", "/api/v1/people"): frozenset({"admin"}),
    ("POST", "/api/v1/departments"): frozenset({"admin"}),
    ("POST", "/api/v1/alerts/{alert_id}/ack"): STAFF,
    ("POST", "/api/v1/alert-rules"): _OFFICE,
    ("PATCH", "/api/v1/alert-rules/{rule_id}"): _OFFICE,
    ("DELETE", "/api/v1/alert-rules/{rule_id}"): _OFFICE,
    ("POST", "/api/v1/channels"): frozenset({"admin"}),
    ("DELETE", "/api/v1/channels/{channel_id}"): frozenset({"admin"}),
    ("POST", "/api/v1/channels/{channel_id}/test"): _OFFICE,
    ("PUT", "/api/v1/escalation/{level}"): frozenset({"admin"}),
    ("POST", "/api/v1/deliveries/retry"): _OFFICE,
    ("POST", "/api/v1/board/messages/{message_id}/status"): _OFFICE,
    # Cases: the role and department of each action are checked by the case services.
    ("POST", "/api/v1/cases"): STAFF,
    ("POST", "/api/v1/cases/{case_ref}/actions/{action}"): STAFF,
    ("POST", "/api/v1/cases/{case_ref}/tasks"): STAFF,
    ("POST", "/api/v1/cases/{case_ref}/progress"): STAFF,
    ("POST", "/api/v1/cases/{case_ref}/replies"): STAFF,
    ("POST", "/api/v1/replies/{reply_id}/{step}"): STAFF,
    ("POST", "/cases/{case_ref}/act"): STAFF,
    ("POST", "/cases/open"): STAFF,
    ("POST", "/cases/{case_ref}/replies"): STAFF,
    ("POST", "/replies/{reply_id}/{step}"): STAFF,
    # --- sources ---
    # A test fetch reaches out to the network (through the guarded fetcher): office staff only.
    ("POST", "/api/v1/sources"): _OFFICE,
    ("POST", "/api/v1/sources/preview"): _OFFICE,
    ("PATCH", "/api/v1/sources/{source_id}"): _OFFICE,
    ("POST", "/api/v1/sources/{source_id}/hot"): _OFFICE,
    ("POST", "/api/v1/sources/{source_id}/fetch"): _OFFICE,
    ("POST", "/api/v1/sources/{source_id}/token"): _OFFICE,
    # --- end sources ---
    # --- search ---
    # --- end search ---
    # --- topics and events ---
    # --- end topics and events ---
    # --- alerts ---
    # The settings pages' forms: rules as the rules API, channels and escalation admin only.
    ("POST", "/alerts/rules"): _OFFICE,
    ("POST", "/alerts/rules/{rule_id}"): _OFFICE,
    ("POST", "/alerts/rules/{rule_id}/enabled"): _OFFICE,
    ("POST", "/alerts/rules/{rule_id}/delete"): _OFFICE,
    ("POST", "/alerts/channels"): frozenset({"admin"}),
    ("POST", "/alerts/channels/{channel_id}/delete"): frozenset({"admin"}),
    ("POST", "/alerts/escalation/{level}"): frozenset({"admin"}),
    # --- end alerts ---
    # --- cases and board ---
    # The case page's task and progress forms (the services check role and department).
    ("POST", "/cases/{case_ref}/tasks"): STAFF,
    ("POST", "/cases/{case_ref}/tasks/{task_id}/done"): STAFF,
    ("POST", "/cases/{case_ref}/progress"): STAFF,
    # The board's office page: marking a message, and opening a case from it.
    ("POST", "/board/office/{message_id}/status"): _LEAD,
    ("POST", "/board/office/{message_id}/case"): _LEAD,
    # --- end cases and board ---
    # --- administration and duty ---
    # Administration (系统管理) is the administrator's alone, pages and API alike.
    ("POST", "/admin/users"): frozenset({"admin"}),
    ("POST", "/admin/users/{user_id}"): frozenset({"admin"}),
    ("POST", "/admin/users/{user_id}/password"): frozenset({"admin"}),
    ("POST", "/admin/users/{user_id}/unlock"): frozenset({"admin"}),
    ("POST", "/admin/users/{user_id}/disable"): frozenset({"admin"}),
    ("POST", "/admin/users/{user_id}/enable"): frozenset({"admin"}),
    ("POST", "/admin/departments"): frozenset({"admin"}),
    ("POST", "/admin/categories"): frozenset({"admin"}),
    ("POST", "/admin/categories/{slug}"): frozenset({"admin"}),
    ("POST", "/admin/categories/{slug}/remove"): frozenset({"admin"}),
    ("POST", "/admin/privacy"): frozenset({"admin"}),
    ("POST", "/admin/privacy/apply"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/users"): frozenset({"admin"}),
    ("PATCH", "/api/v1/admin/users/{user_id}"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/users/{user_id}/password"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/users/{user_id}/unlock"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/departments"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/categories"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/categories/{slug}"): frozenset({"admin"}),
    ("DELETE", "/api/v1/admin/categories/{slug}"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/privacy"): frozenset({"admin"}),
    # Changes nothing, but counts over every post: the administrator's too.
    ("POST", "/api/v1/admin/privacy/dry-run"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/privacy/apply"): frozenset({"admin"}),
    # --- end administration and duty ---
    # --- reports ---
    ("POST", "/reports/schedule"): frozenset({"admin"}),
    ("PUT", "/api/v1/reports/schedule"): frozenset({"admin"}),
    # Making a report (the page's form and the API): analysts, approvers, administrators.
    ("POST", "/api/v1/reports"): _LEAD,
    ("POST", "/reports"): _LEAD,
    # --- end reports ---
}
# Reading that not every role may do.
READ_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/api/v1/audit"): _LEAD,
    ("GET", "/api/v1/deliveries/failed"): _OFFICE | {"approver"},
    ("GET", "/api/v1/board/messages"): _LEAD,
    # --- sources ---
    # --- end sources ---
    # --- search ---
    # --- end search ---
    # --- topics and events ---
    # --- end topics and events ---
    # --- alerts ---
    # --- end alerts ---
    # --- cases and board ---
    # The board's office page shows the messages with their contact details, as the API.
    ("GET", "/board/office"): _LEAD,
    # A case's export: whoever may read the case (the service checks the department and
    # leaves the audit entries out for roles that may not read the audit log).
    ("GET", "/api/v1/cases/{case_ref}/export"): EVERYONE,
    # --- end cases and board ---
    # --- administration and duty ---
    # Accounts' details, lock state and the privacy policy: the administrator only.
    ("GET", "/admin"): frozenset({"admin"}),
    ("GET", "/admin/users"): frozenset({"admin"}),
    ("GET", "/admin/departments"): frozenset({"admin"}),
    ("GET", "/admin/categories"): frozenset({"admin"}),
    ("GET", "/admin/privacy"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/users"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/departments"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/categories"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/privacy"): frozenset({"admin"}),
    # --- end administration and duty ---
}


class SignInRequired(Exception):
    """Raised by the guard; pages redirect to /login, the API answers 401."""


def _route_path(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", request.url.path))


def roles_for(method: str, path: str) -> frozenset[str]:
    if method in SAFE:
        return READ_ROLES.get((method, path), EVERYONE)
    return WRITE_ROLES.get((method, path), frozenset({"admin"}))


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


async def guard(request: Request) -> None:
    """The application-wide dependency: sets `request.state.user` or refuses the request."""
    method = request.method
    path = _route_path(request)
    request.state.user = None
    request.state.csrf = ""
    if (method, path) in PUBLIC or (method == "HEAD" and ("GET", path) in PUBLIC):
        return
    app_state = request.app.state
    now = datetime.now(UTC)
    person: Person | None = None
    via = ""
    auth = request.headers.get("authorization", "")
    from tingfeng.office.signin import (
        record_token_use,
        session_user,
        token_stale,
        token_user,
        touch_session,
    )

    touch = None
    # Read only: a page view must not queue behind the ingest's writes (SQLite has one writer).
    with app_state.engine.connect() as conn:
        if auth.lower().startswith("bearer "):
            person = token_user(conn, auth[7:].strip(), now)
            via = "token"
            if person is None:
                raise HTTPException(401, "The API token is not valid (revoked or expired?).")
            if token_stale(conn, auth[7:].strip(), now):
                touch = {"token": auth[7:].strip()}
        else:
            found = session_user(
                conn, app_state.settings, request.cookies.get(SESSION_COOKIE, ""), now
            )
            if found is not None:
                person, request.state.csrf, touch = found.person, found.csrf_token, found.touch
                via = "session"
    if touch is not None:
        from sqlalchemy.exc import OperationalError

        from tingfeng.db.engine import write_transaction

        try:
            with write_transaction(app_state.engine) as conn:
                if "token" in touch:
                    record_token_use(conn, touch["token"], now)
                else:
                    touch_session(conn, touch, now)
        except OperationalError:
            pass  # busy: the next request slides it
    if person is None:
        raise SignInRequired()
    if method not in SAFE and via == "session":
        sent = request.headers.get("x-csrf-token", "")
        if not sent and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            sent = str((await request.form()).get("csrf_token") or "")
        if not sent or not hmac.compare_digest(sent, request.state.csrf):
            raise HTTPException(403, "CSRF token missing or wrong: reload the page and try again.")
        if not _same_origin(request):
            raise HTTPException(403, "The request came from another site.")
    allowed = roles_for(method, path)
    if person.role not in allowed:
        raise HTTPException(
            403,
            f"The {person.role} role may not do this ({method} {path}); roles that may: "
            f"{', '.join(sorted(allowed))}.",
        )
    request.state.user = person
    from tingfeng import audit

    # Services without an actor argument log this person (the endpoint runs in a copy of
    # this context).
    audit.current_actor.set(audit.Actor.of(person))


def current_user(request: Request) -> Person | None:
    return getattr(request.state, "user", None)


def require_user(request: Request) -> Person:
    person = current_user(request)
    if person is None:
        raise HTTPException(401, "Sign in first.")
    return person


def sign_in_required_response(request: Request, _exc: Exception) -> Any:
    if request.url.path.startswith("/api/") or request.method not in SAFE:
        return JSONResponse(
            {"error": "Sign in first: a session (POST /login) or an API token (Bearer tf_…)."},
            status_code=401,
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
