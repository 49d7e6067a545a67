"""The web application and API, served by a real uvicorn on loopback."""

from __future__ import annotations

from tests.conftest import push_source


def test_health(web) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    assert client.get("/healthz").json()["status"] == "ok"


def test_push_api_stores_posts_once_and_rejects_bad_entries(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    sid, token = push_source(settings)
    auth = {"Authorization": f"Bearer {token}"}
    body = {
        "posts": [
            {
                "id": "m1",
                "text": "网民反映某小区供暖不热，物业称正在检修",
                "published_at": "2026-11-20T08:00:00+08:00",
            },
            {
                "id": "m2",
                "text": "<p>第二条<script>alert(1)</script></p>",
                "url": "https://bbs.example.cn/t/2",
            },
            {"id": "m3", "published_at": "not a date", "text": "坏时间"},
        ]
    }
    first = client.post(f"/api/v1/sources/{sid}/posts", json=body, headers=auth)
    assert first.status_code == 200, first.text
    assert first.json()["stored"] == 2 and first.json()["errors"] == 1
    assert any("posts[2]" in r for r in first.json()["rejected"])
    again = client.post(f"/api/v1/sources/{sid}/posts", json=body, headers=auth).json()
    assert again["stored"] == 0 and again["duplicates"] == 2
    hits = client.get("/api/v1/search", params={"q": "供暖"}).json()["hits"]
    assert len(hits) == 1 and "<mark>供暖</mark>" in hits[0]["snippet_html"]
    health = {s["name"]: s for s in client.get("/api/v1/sources").json()["sources"]}
    assert health["对接平台"]["items_last_24h"] == 2


def test_push_api_refuses_wrong_tokens_and_bad_bodies(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    sid, token = push_source(settings)
    assert (
        client.post(
            f"/api/v1/sources/{sid}/posts",
            json={"posts": []},
            headers={"Authorization": "Bearer wrong"},
        ).status_code
        == 401
    )
    assert client.post(f"/api/v1/sources/{sid}/posts", json={"posts": []}).status_code == 401
    bad = client.post(
        f"/api/v1/sources/{sid}/posts",
        content=b"{not json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    assert client.post("/api/v1/sources/999/posts", json={}).status_code == 404


def test_search_api_reports_query_errors_in_words(web) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    r = client.get("/api/v1/search", params={"q": "(医院 投诉"})
    assert r.status_code == 422 and "not closed" in r.json()["error"]


def test_pages_escape_untrusted_content(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    sid, token = push_source(settings, name="<script>alert('name')</script>")
    client.post(
        f"/api/v1/sources/{sid}/posts",
        headers={"Authorization": f"Bearer {token}"},
        json=[
            {
                "id": "x",
                "text": "医院<img src=x onerror=alert(1)>投诉",
                "url": "javascript:alert(2)",
            },
        ],
    )
    live = client.get("/live").text
    assert "<script>alert('name')</script>" not in live and "&lt;script&gt;" in live
    page = client.get("/search", params={"q": "医院"}).text
    assert "<img src=x" not in page
    assert "javascript:alert" not in page


def test_leads_api_stores_text_and_refuses_private_urls(web) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    ok = client.post(
        "/api/v1/leads",
        json={"text": "群众来电反映：某路口红绿灯损坏三天无人修", "submitted_by": "交通局信息员"},
    )
    assert ok.status_code == 200 and ok.json()["new"] is True
    hits = client.get("/api/v1/search", params={"q": "红绿灯"}).json()["hits"]
    assert [h["id"] for h in hits] == [ok.json()["post_id"]]
    blocked = client.post(
        "/api/v1/leads", json={"url": "http://10.1.2.3/internal", "submitted_by": "x"}
    )
    assert blocked.status_code == 422 and "10.1.2.3" in blocked.json()["error"]
    missing = client.post("/api/v1/leads", json={"text": "无署名"})
    assert missing.status_code == 422
