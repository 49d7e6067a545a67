"""Sign-in, sessions, CSRF, API tokens and the role of every endpoint, against the real server."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import TEST_PASSWORD, add_person, sign_in
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.models import User
from tingfeng.web.app import create_app
from tingfeng.web.guard import PUBLIC, SAFE, roles_for


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """The board's routes too (they are only served when it is enabled)."""
    return settings.model_copy(update={"board_enabled": True})


def _client(web_client: httpx.Client) -> httpx.Client:
    return httpx.Client(base_url=str(web_client.base_url), timeout=30)


def _routes(settings) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    app = create_app(settings)
    out = []
    for route in app.routes:
        for method in sorted(getattr(route, "methods", None) or []):
            if method == "HEAD" or route.path in ("/api/docs", "/api/openapi.json", "/redoc",
                                                   "/docs/oauth2-redirect"):  # fmt: skip
                continue
            out.append((method, route.path))
    return out


def _concrete(path: str) -> str:
    """A URL for a route path: every parameter given a harmless value."""
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_endpoint_needs_sign_in_unless_public(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    routes = _routes(settings)
    assert len(routes) > 70
    with _client(client) as anonymous:
        for method, path in routes:
            if (method, path) in PUBLIC:
                continue
            r = anonymous.request(method, _concrete(path), json={})
            if path.startswith("/api/") or method not in SAFE:
                assert r.status_code == 401, (method, path, r.status_code)
                assert "Sign in first" in r.json()["error"]
            else:
                assert r.status_code == 303, (method, path, r.status_code)
                assert r.headers["location"].startswith("/login?next=")


def test_a_viewer_may_read_but_changes_nothing(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    add_person(settings, "look", "viewer")
    with _client(client) as viewer:
        sign_in(viewer, "look")
        assert viewer.get("/api/v1/cases").status_code == 200
        assert viewer.get("/alerts").status_code == 200
        assert viewer.get("/api/v1/audit").status_code == 403  # leaders and the office only
        refused = 0
        for method, path in _routes(settings):
            if method in SAFE or (method, path) in PUBLIC:
                continue
            if "viewer" in roles_for(method, path):
                continue  # sign out, own password, own inbox
            r = viewer.request(method, _concrete(path), json={})
            assert r.status_code == 403, (method, path, r.status_code, r.text)
            assert "viewer role may not" in r.json()["error"]
            refused += 1
        assert refused > 25


def test_a_change_without_the_csrf_token_or_from_another_site_is_refused(web) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    token = client.headers.pop("X-CSRF-Token")
    r = client.post("/api/v1/departments", json={"name": "办公室"})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = client.post("/api/v1/departments", json={"name": "办公室"},
                    headers={"X-CSRF-Token": "x" * 43})  # fmt: skip
    assert r.status_code == 403
    r = client.post(
        "/api/v1/departments", json={"name": "办公室"},
        headers={"X-CSRF-Token": token, "Origin": "https://evil.example"},
    )  # fmt: skip
    assert r.status_code == 403 and "another site" in r.json()["error"]
    assert client.get("/api/v1/departments").json()["departments"] == []
    r = client.post("/api/v1/departments", json={"name": "办公室"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 201


def test_lock_out_after_wrong_passwords_without_telling_which_part_was_wrong(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    add_person(settings, "zhang", "analyst")
    with _client(client) as c:
        unknown = c.post("/login", data={"username": "nobody", "password": "whatever-1"})
        wrong = c.post("/login", data={"username": "zhang", "password": "wrong-password"})
        assert unknown.status_code == wrong.status_code == 401
        message = "用户名或密码不正确"
        assert message in unknown.text and message in wrong.text
        for _ in range(settings.login_max_failures - 1):
            c.post("/login", data={"username": "zhang", "password": "wrong-password"})
        locked = c.post("/login", data={"username": "zhang", "password": TEST_PASSWORD})
        assert locked.status_code == 401 and "账号已锁定" in locked.text
        assert "tf_session" not in c.cookies
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        until = conn.execute(select(User.locked_until).where(User.username == "zhang")).scalar()
    assert until > datetime.now(UTC) + timedelta(minutes=settings.login_lock_minutes - 1)
    with write_transaction(engine) as conn:  # the lock has run out
        conn.execute(User.__table__.update().values(locked_until=datetime.now(UTC)))
    engine.dispose()
    with _client(client) as c:
        sign_in(c, "zhang")
        assert c.get("/api/v1/session").json()["user"]["username"] == "zhang"


def test_sign_in_redirects_only_within_the_site_and_sign_out_ends_the_session(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    add_person(settings, "li", "analyst")
    with _client(client) as c:
        assert c.get("/cases").headers["location"] == "/login?next=/cases"
        r = c.post("/login", data={"username": "li", "password": TEST_PASSWORD,
                                   "next": "//evil.example/x"})  # fmt: skip
        assert r.status_code == 303 and r.headers["location"] == "/"
        home = c.get("/")  # the overview is the home page after signing in
        assert home.status_code == 200 and "态势总览" in home.text
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        page = c.get("/cases")
        assert page.status_code == 200 and page.headers["x-frame-options"] == "DENY"
        csrf = c.get("/api/v1/session").json()["csrf_token"]
        assert f'content="{csrf}"' in page.text
        c.post("/logout", data={"csrf_token": csrf})
        assert c.get("/api/v1/cases").status_code == 401


def test_password_change_ends_every_session(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    add_person(settings, "wang", "approver")
    with _client(client) as first, _client(client) as second:
        csrf = sign_in(first, "wang")
        sign_in(second, "wang")
        bad = first.post("/account/password", data={"csrf_token": csrf, "old": "nope-nope-1",
                                                     "new": "new-password-2",
                                                     "again": "new-password-2"})  # fmt: skip
        assert bad.status_code == 422 and "原密码不正确" in bad.text
        ok = first.post("/account/password", data={"csrf_token": csrf, "old": TEST_PASSWORD,
                                                    "new": "new-password-2",
                                                    "again": "new-password-2"})  # fmt: skip
        assert ok.status_code == 303
        assert second.get("/api/v1/cases").status_code == 401
        r = first.post("/login", data={"username": "wang", "password": "new-password-2"})
        assert r.status_code == 303


def test_api_tokens_act_as_their_person_without_csrf(web, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from tingfeng.cli.main import app

    client, settings = web
    add_person(settings, "script", "analyst")
    out = CliRunner().invoke(
        app, ["--db", settings.database_url, "user", "token-add", "script", "--name", "日报脚本"]
    )
    token = out.stdout.strip()
    assert out.exit_code == 0 and token.startswith("tf_")
    with _client(client) as api:
        headers = {"Authorization": f"Bearer {token}"}
        r = api.post("/api/v1/cases", json={"title": "脚本登记的处理单"}, headers=headers)
        assert r.status_code == 201 and r.json()["created_by"] == "script"
        r = api.post("/api/v1/departments", json={"name": "x"}, headers=headers)
        assert r.status_code == 403  # an analyst's token cannot manage the office
        bad = api.get("/api/v1/cases", headers={"Authorization": "Bearer tf_forged"})
        assert bad.status_code == 401
    from tingfeng.db.models import ApiToken

    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        (row,) = conn.execute(select(ApiToken.__table__)).all()
    engine.dispose()
    assert row.name == "日报脚本" and row.last_used_at is not None
    assert token not in str(tuple(row))  # only its hash is kept


@pytest.mark.parametrize("role", ["handler", "viewer"])
def test_case_workflow_over_the_api_with_department_scope(web, role) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    add_person(settings, "ana", "analyst")
    add_person(settings, "boss", "approver", "城管局")
    add_person(settings, "other", role, "卫健局")
    with _client(client) as ana, _client(client) as boss, _client(client) as other:
        sign_in(ana, "ana")
        sign_in(boss, "boss")
        sign_in(other, "other")
        case = ana.post("/api/v1/cases", json={"title": "占道经营", "level": "较大"}).json()
        cid = case["id"]
        r = ana.post(f"/api/v1/cases/{cid}/actions/assess", json={"handling": "交城管局"})
        assert r.json()["state"] == "assessed"
        assert other.get(f"/api/v1/cases/{cid}").status_code == (403 if role == "handler" else 200)
        r = ana.post(f"/api/v1/cases/{cid}/actions/approve_handling", json={})
        assert r.status_code == 403 and "analyst role may not" in r.json()["error"]
        # 城管局 is a top department here: its approver also sees cases nobody holds yet.
        r = boss.post(f"/api/v1/cases/{cid}/actions/approve_handling", json={})
        assert r.status_code == 200 and r.json()["state"] == "approved"
        r = ana.post(f"/api/v1/cases/{cid}/actions/assign", json={"department": "城管局"})
        assert r.json()["department"] == "城管局"
        r = other.post(f"/api/v1/cases/{cid}/actions/accept", json={})
        assert r.status_code == 403
        assert ("outside theirs" if role == "handler" else "viewer role may not") in r.json()[
            "error"
        ]
        # The case page leaves the audit trail out for those who may not read the audit log.
        if role == "viewer":
            page = other.get(f"/cases/{cid}")
            assert page.status_code == 200 and 'id="audit-trail"' not in page.text
        r = ana.post(f"/api/v1/cases/{cid}/actions/close", json={"result": "x"})
        assert r.status_code == 422 and "only from" in r.json()["error"]


def test_settings_changed_on_the_web_are_logged_under_the_person(web) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    r = client.post("/api/v1/departments", json={"name": "网信科"})
    assert r.status_code == 201
    r = client.post(
        "/api/v1/alert-rules", json={"name": "全部新事件", "conditions": {"new_event": True}}
    )
    assert r.status_code == 201, r.text
    entries = client.get("/api/v1/audit", params={"limit": 5}).json()["entries"]
    by_action = {e["action"]: e for e in entries}
    rule = by_action["settings.alert_rule_add"]
    assert rule["actor"] == "tester" and rule["user_id"] is not None
    assert by_action["user.sign_in"]["actor"] == "tester"


def test_the_openapi_description_says_how_to_authenticate(web) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    schema = httpx.get(f"{client.base_url}/api/openapi.json").json()  # public, like the docs
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiToken"]["scheme"] == "bearer" and schemes["session"]["name"] == "tf_session"
    assert "/api/v1/cases/{case_ref}/actions/{action}" in schema["paths"]
