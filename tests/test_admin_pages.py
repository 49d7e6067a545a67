"""The administration pages and API (系统管理) against the real server, and in Chromium."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
from playwright.sync_api import expect
from sqlalchemy import select

from tests.conftest import add_person, screenshot, sign_in, signed_in_page
from tingfeng.collect.items import RawItem
from tingfeng.collect.sources import add_source
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.models import Post
from tingfeng.ingest.ingestor import Ingestor, SourceRef
from tingfeng.web.guard import roles_for

ADMIN_PAGES = ["/admin/users", "/admin/departments", "/admin/categories", "/admin/privacy"]


def _other(client: httpx.Client) -> httpx.Client:
    return httpx.Client(base_url=str(client.base_url), timeout=30)


def _form(client: httpx.Client, path: str, **fields: str) -> httpx.Response:
    """Post a page's form as the browser does: urlencoded, with the CSRF field."""
    return client.post(path, data={"csrf_token": client.headers["X-CSRF-Token"], **fields})


def _ingest(settings, at: datetime, items: list[RawItem]) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        source = add_source(conn, name=f"论坛{at:%j}", kind="lead", config={})
    Ingestor(engine, settings, now=lambda: at).ingest(SourceRef(source.id, "Asia/Shanghai"), items)
    engine.dispose()


def test_administration_is_refused_to_everyone_but_the_administrator(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    for path in ADMIN_PAGES:
        r = client.get(path)
        assert r.status_code == 200 and "系统管理" in r.text, path
    r = client.get("/admin")
    assert r.status_code == 303 and r.headers["location"] == "/admin/users"
    for role in ("analyst", "approver"):
        add_person(settings, f"p-{role}", role)
        with _other(client) as other:
            sign_in(other, f"p-{role}")
            for path in [*ADMIN_PAGES, "/api/v1/admin/users", "/api/v1/admin/privacy"]:
                r = other.get(path)
                assert r.status_code == 403 and "may not" in r.json()["error"], (role, path)
            r = other.post("/api/v1/admin/users", json={"username": "x", "password": "12345678"})
            assert r.status_code == 403
            assert _form(other, "/admin/privacy/apply").status_code == 403
            assert "/admin" not in other.get("/duty").text  # no link to it in the menu
    # Every administration route, read or write, names the administrator alone.
    import tingfeng.web.guard as guard

    admin_routes = [k for k in (*guard.READ_ROLES, *guard.WRITE_ROLES)
                    if k[1].startswith(("/admin", "/api/v1/admin"))]  # fmt: skip
    assert len(admin_routes) >= 30
    assert {roles_for(m, p) for m, p in admin_routes} == {frozenset({"admin"})}


def test_a_user_added_on_the_page_signs_in_and_is_managed_there(web) -> None:  # type: ignore[no-untyped-def]
    client, _settings = web
    r = _form(client, "/admin/departments", name="网信办")
    assert r.status_code == 303
    r = _form(client, "/admin/departments", name="舆情科", parent="1")
    assert r.status_code == 303 and r.headers["location"] == "/admin/departments?ok=added"
    tree = client.get("/api/v1/admin/departments").json()
    assert tree["total"] == 2 and tree["departments"][0]["children"][0]["name"] == "舆情科"

    r = _form(client, "/admin/users", username="wangwu", display_name="王五", role="handler",
              department="2", password="first-pass-1")  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/admin/users?ok=added"
    page = client.get("/admin/users?ok=added").text
    assert 'id="notice"' in page and 'data-user="wangwu"' in page and "经办人" in page
    users = client.get("/api/v1/admin/users", params={"role": "handler"}).json()
    assert users["total"] == 1
    wang = users["users"][0]
    assert (wang["department"], wang["locked"], wang["active"]) == ("舆情科", False, True)
    with _other(client) as person:
        r = person.post("/login", data={"username": "wangwu", "password": "first-pass-1"})
        assert r.status_code == 303
        assert person.get("/api/v1/session").json()["user"]["role"] == "handler"

        # The same user name again: refused, with the reason beside the form, values kept.
        r = _form(client, "/admin/users", username="wangwu", display_name="<b>重名</b>",
                  password="another-pass-1")  # fmt: skip
        assert r.status_code == 422 and 'id="add-error"' in r.text
        assert "already a user named" in r.text and "&lt;b&gt;重名&lt;/b&gt;" in r.text

        # Role and department change; a reset password ends the person's session.
        r = _form(client, f"/admin/users/{wang['id']}", display_name="王五", role="approver",
                  department="1", email="", phone="")  # fmt: skip
        assert r.status_code == 303
        changed = client.get("/api/v1/admin/users", params={"role": "approver"}).json()["users"]
        assert changed[0]["department"] == "网信办"
        r = _form(client, f"/admin/users/{wang['id']}/password", password="second-pass-2")
        assert r.status_code == 303
        assert person.get("/api/v1/session").status_code == 401
        r = person.post("/login", data={"username": "wangwu", "password": "second-pass-2"})
        assert r.status_code == 303

        # Disabled: the session ends at once and signing in fails; enabled again, it works.
        assert _form(client, f"/admin/users/{wang['id']}/disable").status_code == 303
        assert person.get("/api/v1/session").status_code == 401
        r = person.post("/login", data={"username": "wangwu", "password": "second-pass-2"})
        assert r.status_code == 401
        assert _form(client, f"/admin/users/{wang['id']}/enable").status_code == 303

        # Locked out by wrong passwords; the administrator unlocks.
        for _ in range(5):
            person.post("/login", data={"username": "wangwu", "password": "wrong-wrong"})
        r = client.get("/api/v1/admin/users", params={"role": "approver"})
        assert r.json()["users"][0]["locked"] is True
        assert "已锁定至" in client.get("/admin/users").text
        assert _form(client, f"/admin/users/{wang['id']}/unlock").status_code == 303
        r = person.post("/login", data={"username": "wangwu", "password": "second-pass-2"})
        assert r.status_code == 303

    # Nobody disables themselves (the last administrator least of all).
    me = client.get("/api/v1/session").json()["user"]["id"]
    r = _form(client, f"/admin/users/{me}/disable")
    assert r.status_code == 422 and 'id="user-error"' in r.text and "own account" in r.text
    r = client.patch(f"/api/v1/admin/users/{me}", json={"role": "viewer"})
    assert r.status_code == 422 and "own account" in r.json()["error"]
    actions = [
        e["action"] for e in client.get("/api/v1/audit", params={"limit": 50}).json()["entries"]
    ]
    for action in ("settings.user_add", "settings.user_change", "settings.user_password",
                   "settings.user_disable", "settings.user_enable", "user.unlock",
                   "settings.department_add"):  # fmt: skip
        assert action in actions, action


def test_a_category_edit_saves_a_new_version_and_problems_show_in_place(web) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    before = client.get("/api/v1/admin/categories").json()
    slug = before["categories"][0]["slug"]
    page = client.get("/admin/categories").text
    assert f'id="category-{slug}"' in page and "贪污=2" in page

    fields = {"slug": slug, "name_zh": "官员与腐败", "name_en": "Officials",
              "description": "", "enabled": "on", "min_score": "2", "min_keywords": "1",
              "keywords": "贪污=2\n受贿=2\n吃拿卡要=1.5", "exclude": ""}  # fmt: skip
    r = _form(client, f"/admin/categories/{slug}", **fields)
    assert r.status_code == 303 and r.headers["location"] == "/admin/categories?ok=saved"
    after = client.get("/api/v1/admin/categories").json()
    assert after["version"] != before["version"]
    assert after["versions"][0]["note"] == f"edit {slug} (web)"
    assert len(after["versions"]) == len(before["versions"]) + 1
    assert after["categories"][0]["keywords"] == {"贪污": 2.0, "受贿": 2.0, "吃拿卡要": 1.5}

    # An exclusion equal to a keyword, and a weight that is no number: refused, shown in place.
    bad = {**fields, "keywords": "贪污=2\n受贿=很多", "exclude": "贪污"}
    r = _form(client, f"/admin/categories/{slug}", **bad)
    assert r.status_code == 422
    block = r.text.split(f'id="category-{slug}"', 1)[1].split('class="post category"', 1)[0]
    assert f'id="errors-{slug}"' in block and "受贿=很多" in block and "第 2 行" in block
    r = _form(client, f"/admin/categories/{slug}", **{**bad, "keywords": "贪污=2"})
    block = r.text.split(f'id="category-{slug}"', 1)[1].split('class="post category"', 1)[0]
    assert r.status_code == 422 and "equals keyword" in block
    assert client.get("/api/v1/admin/categories").json()["version"] == after["version"]

    # Legal but doubtful (an exclusion touching no keyword): saved, the warning under it.
    r = _form(client, f"/admin/categories/{slug}", **{**fields, "exclude": "天气预报"})
    assert r.status_code == 303
    page = client.get("/admin/categories").text
    assert f'id="lint-{slug}"' in page and "has no effect" in page

    # Added and removed over the API; a refused one says each problem.
    r = client.post("/api/v1/admin/categories",
                    json={"slug": "traffic", "name_zh": "交通", "name_en": "Traffic",
                          "keywords": {"堵车": 2}})  # fmt: skip
    assert r.status_code == 201 and r.json()["category"]["slug"] == "traffic"
    r = client.put("/api/v1/admin/categories/traffic", json={"keywords": {"堵车": 50}})
    assert r.status_code == 422 and "weight of keyword" in r.json()["problems"][0]
    assert client.delete("/api/v1/admin/categories/traffic").status_code == 200
    r = _form(client, "/admin/categories/traffic/remove")
    assert r.status_code == 422 and "no category" in r.text


def test_privacy_policy_over_the_api(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    old = datetime.now(UTC) - timedelta(days=90)
    _ingest(settings, old, [RawItem(text=f"旧帖{i}：道路积水", external_id=f"o{i}",
                                    published_at=old, author="赵六") for i in range(3)])  # fmt: skip
    r = client.put("/api/v1/admin/privacy", json={"retention_days": 0})
    assert r.status_code == 422 and "retention_days" in r.json()["error"]
    r = _form(client, "/admin/privacy", retention_days="半年", daily="on")
    assert r.status_code == 422 and 'id="policy-error"' in r.text and "半年" in r.text
    r = _form(client, "/admin/privacy", retention_days="400", **{"source_days_1": "0"})
    assert r.status_code == 303 and r.headers["location"] == "/admin/privacy?ok=saved"
    saved = client.get("/api/v1/admin/privacy").json()["policy"]
    assert saved == {"retention_days": 400, "source_retention_days": {"1": 0},
                     "pseudonymize_after_days": None, "daily": False}  # fmt: skip
    r = client.post("/api/v1/admin/privacy/dry-run", json={"retention_days": 30})
    assert (r.json()["delete"], r.json()["pseudonymize"]) == (3, 0)
    r = client.put("/api/v1/admin/privacy", json={"pseudonymize_after_days": 30})
    assert r.status_code == 200
    assert client.post("/api/v1/admin/privacy/dry-run").json()["pseudonymize"] == 3
    r = client.post("/api/v1/admin/privacy/apply")
    assert r.status_code == 200 and r.json()["pseudonymized"] == 3
    shown = client.get("/api/v1/admin/privacy").json()
    assert shown["last_run"]["trigger"] == "api" and shown["policy"]["retention_days"] is None
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        authors = set(conn.execute(select(Post.author)).scalars())
    engine.dispose()
    assert len(authors) == 1 and "赵六" not in authors and authors.pop().startswith("作者-")


def test_users_and_privacy_pages_in_the_browser(web, browser) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    old = datetime.now(UTC) - timedelta(days=400)
    _ingest(settings, old, [RawItem(text=f"去年的帖子{i}：路灯不亮", external_id=f"y{i}",
                                    published_at=old, author="钱七") for i in range(4)])  # fmt: skip
    page = signed_in_page(browser, client)
    base = str(client.base_url)
    page.goto(base + "/admin/users?lang=zh_CN")  # the texts below are the Chinese ones
    page.fill("#add-user-form input[name=username]", "sunba")
    page.fill("#add-user-form input[name=display_name]", "孙八<script>window.__xss=1</script>")
    page.select_option("#add-user-form select[name=role]", "analyst")
    page.fill("#add-user-form input[name=password]", "browser-pass-1")
    page.click("#add-user-form button[type=submit]")
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator('tr[data-user="sunba"] td.role')).to_have_text("监测员")
    assert page.evaluate("window.__xss") is None
    screenshot(page, "admin_users")
    with _other(client) as person:
        r = person.post("/login", data={"username": "sunba", "password": "browser-pass-1"})
        assert r.status_code == 303

    page.goto(base + "/admin/categories")
    expect(page.locator("#categories .category").first).to_be_visible()
    screenshot(page, "admin_categories")

    page.goto(base + "/admin/privacy")
    page.fill("input[name=retention_days]", "365")
    page.fill("input[name=pseudonymize_after_days]", "0")
    page.click("#dry-run")
    counts = page.locator("#dry-run-counts")
    expect(counts).to_contain_text("4")
    assert re.search(r"删除 4 条帖文、化名 4 条", counts.inner_text())
    screenshot(page, "admin_privacy")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#apply-now")
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator("#last-run")).to_contain_text("删除帖文 4 条")
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        assert conn.execute(select(Post.id)).first() is None
    engine.dispose()
    assert page.input_value("input[name=retention_days]") == "365"

    # The duty page, converted to both languages, with someone on duty.
    today = datetime.now(UTC).date() - timedelta(days=1)
    r = client.post("/api/v1/duty/shifts", json={"name": "全天", "starts_at": "00:00", "hours": 24,
                    "rotation": {"A": ["sunba"]}, "starts_on": today.isoformat()})  # fmt: skip
    assert r.status_code == 201, r.text
    page.goto(base + "/duty")
    expect(page.locator("#on-duty")).to_contain_text("孙八")
    expect(page.locator("#roster")).to_contain_text("全天")
    screenshot(page, "duty")
    page.close()
