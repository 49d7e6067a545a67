"""The sources pages and API (信源) against a real server and real feeds on loopback."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import add_person, screenshot, sign_in, signed_in_page
from tests.loopback import LoopbackServer, Reply
from tingfeng.settings import Settings

WEB = Path(__file__).parent / "fixtures" / "web"
RSS = "application/rss+xml"
TITLES = [
    "地铁3号线二期工程全面开工",
    "市场监管部门开展春季食品安全专项检查",
    "图书馆新馆试运行 周末预约名额一抢而空",
]


@pytest.fixture
def settings(tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    """The shared test settings, with small limits so that "too big" and "slow" fail fast."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'tf.db'}",
        data_dir=tmp_path / "var",
        fetch_allowed_networks=["127.0.0.0/8"],
        fetch_per_host_interval_s=0.0,
        fetch_backoff_s=0.01,
        fetch_retries=0,
        fetch_read_timeout_s=1.0,
        fetch_total_timeout_s=3.0,
        fetch_max_bytes=200_000,
    )


def feed_source(loopback: LoopbackServer) -> dict:
    loopback.route("/rss.xml", Reply(body=(WEB / "rss2.xml").read_bytes(), content_type=RSS))
    return {"kind": "feed", "url": loopback.url("/rss.xml"), "config": {"fetch_article": "never"}}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def client_of(
    client: httpx.Client, username: str, role: str, settings: Settings
) -> Iterator[httpx.Client]:
    """A second client, signed in as a new person of `role`."""
    add_person(settings, username, role)
    with httpx.Client(base_url=client.base_url, timeout=30) as other:
        sign_in(other, username)
        yield other


def test_test_fetch_shows_items_and_stores_nothing_then_save_and_fetch_now(web, loopback) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    draft = feed_source(loopback)
    r = client.post("/api/v1/sources/preview", json=draft)
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["ok"] and preview["count"] == 3 and preview["stored"] == 0
    assert [i["title"] for i in preview["items"]] == TITLES
    assert preview["items"][0]["author"] == "周明"
    assert preview["items"][0]["published_at"].startswith("2024-03-08T01:30")
    assert client.get("/api/v1/sources").json()["sources"] == []
    assert client.get("/api/v1/posts").json()["posts"] == []

    created = client.post(
        "/api/v1/sources",
        json=draft | {"name": "江宁新闻网", "interval": "30m", "region": "江宁区"},
    )
    assert created.status_code == 201, created.text
    source = created.json()
    assert source["interval_s"] == 1800 and source["region"] == "江宁区"
    assert source["config"]["url"] == draft["url"]
    assert source["health"]["status"] == "never"
    sid = source["id"]
    # Saving test-fetched again (check=true by default) but stored no posts.
    assert client.get("/api/v1/posts").json()["posts"] == []

    fetched = client.post(f"/api/v1/sources/{sid}/fetch")
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() | {"seconds": 0} == {
        "running": False, "ok": True, "error": None, "read": 3, "stored": 3, "duplicates": 0,
        "errors": 0, "seconds": 0,
    }  # fmt: skip
    detail = client.get(f"/api/v1/sources/{sid}").json()
    assert detail["health"]["status"] == "healthy"
    assert [(r["ok"], r["items_stored"]) for r in detail["fetch_log"]] == [(True, 3)]
    log = client.get(f"/api/v1/sources/{sid}/fetch-log").json()
    assert log["total"] == 1
    page = client.get(f"/sources/{sid}").text
    assert all(title in page for title in TITLES)
    listing = client.get("/sources").text
    assert "江宁新闻网" in listing and 'data-status="healthy"' in listing


BAD_FEEDS = {
    "/garbage.xml": (
        Reply(body=(WEB / "garbage_feed.xml").read_bytes(), content_type=RSS),
        "not valid RSS/Atom/JSON Feed",
    ),
    "/page.html": (  # a GBK web page, decoded, but not a feed
        Reply(body=(WEB / "article_gbk_781.html").read_bytes(),
              content_type="text/html; charset=gbk"),
        "not valid RSS/Atom/JSON Feed",
    ),
    "/huge.xml": (
        Reply(body=b"<rss>" + b" " * 400_000 + b"</rss>", content_type=RSS), "larger than"
    ),
    "/slow.xml": (Reply(body=b"<rss/>", content_type=RSS, delay_s=1.5), "did not answer"),
    "/missing.xml": (None, "404"),
}  # fmt: skip


def test_a_bad_feed_gives_a_plain_error_and_stores_nothing(web, loopback) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    for route, (reply, expected) in BAD_FEEDS.items():
        if reply is not None:
            loopback.route(route, reply)
        draft = {"kind": "feed", "url": loopback.url(route)}
        preview = client.post("/api/v1/sources/preview", json=draft).json()
        assert preview["ok"] is False and expected in preview["error"], (route, preview)
        refused = client.post("/api/v1/sources", json=draft | {"name": "坏信源"})
        assert refused.status_code == 422, route
        error = refused.json()["error"]
        assert expected in error and "Nothing was stored" in error, (route, error)
    assert client.get("/api/v1/sources").json()["sources"] == []


def test_unsafe_or_unreachable_addresses_and_server_files_are_refused(web, loopback) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    blocked = client.post(
        "/api/v1/sources/preview", json={"kind": "feed", "url": "http://10.1.2.3/rss.xml"}
    ).json()
    assert blocked["ok"] is False and "10.1.2.3" in blocked["error"]
    metadata = client.post(
        "/api/v1/sources",
        json={"name": "元数据", "kind": "feed", "url": "http://169.254.169.254/latest/"},
    )
    assert metadata.status_code == 422 and "169.254.169.254" in metadata.json()["error"]
    down = client.post(
        "/api/v1/sources/preview",
        json={"kind": "feed", "url": f"http://127.0.0.1:{closed_port()}/rss.xml"},
    ).json()
    assert down["ok"] is False and "127.0.0.1" in down["error"]
    # A path typed into the browser must never read the server's files.
    for kind in ("import", "replay"):
        r = client.post("/api/v1/sources/preview", json={"kind": kind, "url": "/etc/passwd"})
        assert r.status_code == 422 and "tingfeng source add" in r.json()["error"]
    loopback.route(
        "/empty.xml",
        Reply(
            body=b'<rss version="2.0"><channel><title>t</title></channel></rss>', content_type=RSS
        ),
    )
    empty = client.post(
        "/api/v1/sources/preview", json={"kind": "feed", "url": loopback.url("/empty.xml")}
    ).json()
    assert empty["ok"] is True and empty["count"] == 0 and empty["warning"]
    bad_config = client.post(
        "/api/v1/sources/preview", json={"kind": "feed", "url": "ftp://example.cn/rss"}
    ).json()
    assert bad_config["ok"] is False and "http://" in bad_config["error"]
    assert client.get("/api/v1/sources").json()["sources"] == []


def test_schedule_hot_mode_and_enabled_persist(web, loopback) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    draft = feed_source(loopback)
    sid = client.post("/api/v1/sources", json=draft | {"name": "县新闻", "check": False}).json()[
        "id"
    ]

    changed = client.patch(
        f"/api/v1/sources/{sid}", json={"interval": "5m", "hot_interval": "30s", "region": "某县"}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["interval_s"], changed.json()["hot_interval_s"]) == (300, 30)
    bad = client.patch(f"/api/v1/sources/{sid}", json={"interval": "soon"})
    assert bad.status_code == 422 and "15m" in bad.json()["error"]
    assert client.patch("/api/v1/sources/999", json={"interval": "5m"}).status_code == 404

    hot = client.post(f"/api/v1/sources/{sid}/hot", json={"minutes": 120}).json()
    until = datetime.fromisoformat(hot["hot_until"])
    assert hot["hot"] is True
    assert abs(until - (datetime.now(UTC) + timedelta(hours=2))) < timedelta(minutes=1)
    again = client.get(f"/api/v1/sources/{sid}").json()
    assert (again["interval_s"], again["hot"], again["region"]) == (300, True, "某县")
    assert "热点模式" in client.get("/sources").text

    ended = client.post(f"/api/v1/sources/{sid}/hot", json={"minutes": 0}).json()
    assert ended["hot"] is False and ended["hot_until"] is None
    off = client.patch(f"/api/v1/sources/{sid}", json={"enabled": False}).json()
    assert off["enabled"] is False and off["health"]["status"] == "disabled"
    disabled_page = client.get("/sources", params={"status": "disabled"}).text
    assert "县新闻" in disabled_page
    assert "县新闻" not in client.get("/sources", params={"status": "healthy"}).text
    entries = client.get("/api/v1/audit", params={"subject": f"source:{sid}"}).json()["entries"]
    assert {"settings.source_update", "settings.source_hot"} <= {e["action"] for e in entries}


def test_only_admin_and_analyst_change_sources(web, loopback) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    draft = feed_source(loopback) | {"name": "测试信源", "check": False}
    sid = client.post("/api/v1/sources", json=draft).json()["id"]
    for username, role in (("viewer1", "viewer"), ("handler1", "handler")):
        with client_of(client, username, role, settings) as other:
            assert other.post("/api/v1/sources", json=draft | {"name": "x"}).status_code == 403
            assert other.post("/api/v1/sources/preview", json=draft).status_code == 403
            assert other.patch(f"/api/v1/sources/{sid}", json={"interval": "1m"}).status_code == 403
            assert other.post(f"/api/v1/sources/{sid}/hot", json={}).status_code == 403
            assert other.post(f"/api/v1/sources/{sid}/fetch").status_code == 403
            # Reading is open to them; the forms are not shown.
            assert other.get(f"/api/v1/sources/{sid}").status_code == 200
            page = other.get(f"/sources/{sid}").text
            assert "测试信源" in page and 'id="fetch-form"' not in page
            assert 'id="add-source"' not in other.get("/sources").text
    with client_of(client, "analyst1", "analyst", settings) as analyst:
        r = analyst.post("/api/v1/sources", json=draft | {"name": "分析员添加"})
        assert r.status_code == 201, r.text
    assert len(client.get("/api/v1/sources").json()["sources"]) == 2


def test_push_source_token_is_shown_once_and_can_be_reissued(web) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    created = client.post(
        "/api/v1/sources", json={"name": "对接平台", "kind": "push", "config": {"platform": "x"}}
    )
    assert created.status_code == 201, created.text
    sid, token = created.json()["id"], created.json()["push_token"]
    assert "push_token" not in client.get(f"/api/v1/sources/{sid}").json()

    def push(secret: str) -> int:
        return client.post(
            f"/api/v1/sources/{sid}/posts",
            headers={"Authorization": f"Bearer {secret}"},
            json=[{"id": "1", "text": "县医院门诊楼漏雨"}],
        ).status_code

    assert push(token) == 200
    assert client.post(f"/api/v1/sources/{sid}/fetch").status_code == 422
    new = client.post(f"/api/v1/sources/{sid}/token").json()["push_token"]
    assert new != token and push(token) == 401 and push(new) == 200
    page = client.get(f"/sources/{sid}").text
    assert new not in page and "县医院门诊楼漏雨" in page


def test_add_a_feed_in_the_browser_then_fetch_it(web, browser, loopback) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    url = feed_source(loopback)["url"]
    page = signed_in_page(browser, client)  # type: ignore[attr-defined]
    page.goto(str(client.base_url) + "/sources/new")
    page.fill("input[name=name]", "江宁新闻网")
    page.select_option("select[name=kind]", "feed")
    # Only the fields of the chosen kind are shown.
    assert page.locator("textarea[name=keywords]").is_hidden()
    page.select_option("select[name=kind]", "site_search")
    assert page.locator("textarea[name=keywords]").is_visible()
    page.select_option("select[name=kind]", "feed")
    page.fill("input[name=url]", loopback.url("/missing.xml"))
    page.click("#test-btn")
    page.wait_for_selector("#preview-error:not([hidden])")
    assert "404" in page.inner_text("#preview-error")

    page.fill("input[name=url]", url)
    page.fill("textarea[name=config]", '{"fetch_article": "never"}')
    page.click("#test-btn")
    page.wait_for_selector("#preview-list tbody tr >> text=地铁3号线二期工程全面开工")
    assert page.locator("#preview-list tbody tr").count() == 3
    assert "3" in page.inner_text("#preview-count")
    assert client.get("/api/v1/sources").json()["sources"] == []
    screenshot(page, "source_new")

    page.click("#save-btn")
    page.wait_for_url(re.compile(r".*/sources/\d+$"))
    page.wait_for_selector("#fetch-btn")
    page.click("#fetch-btn")
    page.wait_for_selector("#flash:not([hidden])")
    page.wait_for_selector("#source-posts >> text=图书馆新馆试运行")
    assert "3" in page.inner_text("#flash")
    assert page.locator("#fetch-log tbody tr.run-ok").count() == 1
    screenshot(page, "source")

    page.goto(str(client.base_url) + "/sources")
    page.wait_for_selector("#sources-table >> text=江宁新闻网")
    assert page.locator("tr[data-status=healthy]").count() == 1
    screenshot(page, "sources")
    page.close()
