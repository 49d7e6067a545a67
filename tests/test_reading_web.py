"""Readings through the web API, served by a real uvicorn on loopback: reading filters on search
and the reading of one post."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import push_source
from tingfeng.collect.sources import add_source, issue_push_token
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.settings import Settings

POSTS = {
    "complaint": "这家饭店太差劲了，服务员态度恶劣，菜又贵又难吃，再也不来了！",
    "fire": "浙江杭州萧山区一厂房发生火灾，消防救援人员正在现场灭火，暂无人员伤亡。",
    "westlake": "今天去杭州西湖玩了，风景真美，心情特别好",
    "traffic": "广州天河区交通拥堵严重，上班路上堵了两个小时",
    "rumour": "网传某地自来水被投毒，紧急扩散！转发告诉家人千万不要喝自来水！",
}
LIBRARY = "区里发布消息：新建的图书馆下周开放"  # names no place: its source's region applies
ALL = "饭店 OR 火灾 OR 西湖 OR 拥堵 OR 自来水 OR 图书馆"


def push(client: httpx.Client, sid: int, token: str, posts: dict[str, str]) -> None:
    body = {"posts": [{"id": name, "text": text} for name, text in posts.items()]}
    r = client.post(
        f"/api/v1/sources/{sid}/posts", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == len(posts)


def post_ids(client: httpx.Client) -> dict[str, int]:
    """Post ids by name, found by their text (the push API does not return ids)."""
    posts = client.get("/api/v1/posts", params={"limit": 100}).json()["posts"]
    texts = {**POSTS, "library": LIBRARY}
    return {name: p["id"] for p in posts for name, text in texts.items() if p["text"] == text}


def hits(client: httpx.Client, **params: Any) -> dict[int, dict[str, Any]]:
    r = client.get("/api/v1/search", params={"q": ALL, **params})
    assert r.status_code == 200, r.text
    return {h["id"]: h for h in r.json()["hits"]}


def test_search_filters_on_readings_and_returns_them(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    sid, token = push_source(settings)
    push(client, sid, token, POSTS)
    hangzhou_sid, hangzhou_token = _source_in(settings, "杭州市融媒体中心", "浙江省杭州市")
    push(client, hangzhou_sid, hangzhou_token, {"library": LIBRARY})
    ids = post_ids(client)
    assert len(ids) == len(POSTS) + 1

    everything = hits(client)
    assert set(everything) == set(ids.values())
    # Every hit carries its reading.
    for hit in everything.values():
        reading = hit["reading"]
        assert reading is not None
        assert reading["polarity"] in ("negative", "neutral", "positive")
        assert {"emotion", "needs_verification", "keywords", "regions", "categories"} <= set(
            reading
        )

    negative = hits(client, polarity="negative")
    assert ids["complaint"] in negative and ids["rumour"] in negative
    assert ids["westlake"] not in negative
    assert all(h["reading"]["polarity"] == "negative" for h in negative.values())
    assert set(hits(client, polarity="positive")) == {ids["westlake"]}
    both = hits(client, polarity=["positive", "negative"])
    assert set(both) == set(negative) | {ids["westlake"]}

    safety = hits(client, category="public-safety")
    assert set(safety) == {ids["fire"]}
    assert "public-safety" in [c["slug"] for c in safety[ids["fire"]]["reading"]["categories"]]

    hangzhou = {ids["fire"], ids["westlake"], ids["library"]}
    assert set(hits(client, region="杭州")) == hangzhou
    assert set(hits(client, region="330100")) == hangzhou
    assert set(hits(client, region="浙江省")) == hangzhou  # a province covers its counties
    assert set(hits(client, region="萧山区")) == {ids["fire"]}
    assert set(hits(client, region=["广州", "杭州"])) == hangzhou | {ids["traffic"]}
    library = hits(client, region="杭州")[ids["library"]]["reading"]
    assert [(r["code"], r["origin"]) for r in library["regions"]] == [("330100", "source")]

    assert set(hits(client, needs_verification="true", q="自来水 OR 饭店")) == {ids["rumour"]}
    assert set(hits(client, emotion="happy")) == {ids["westlake"]}
    assert set(hits(client, polarity="positive", region="广州")) == set()

    counted = client.get("/api/v1/search", params={"q": ALL, "region": "杭州", "count_only": 1})
    assert counted.json() == {"count": len(hangzhou)}


def test_unknown_regions_are_refused_in_words(web) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    for value in ("火星", "不存在的地方市"):
        r = client.get("/api/v1/search", params={"q": "火灾", "region": value})
        assert r.status_code == 422, r.text
        assert value in r.json()["error"] and "region" in r.json()["error"]


def test_the_reading_of_one_post(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    sid, token = push_source(settings)
    push(client, sid, token, {"fire": POSTS["fire"]})
    (post_id,) = post_ids(client).values()
    r = client.get(f"/api/v1/posts/{post_id}/reading")
    assert r.status_code == 200, r.text
    reading = r.json()
    assert reading["regions"][0]["code"] == "330109"
    assert reading["regions"][0]["path_codes"][:2] == ["330000", "330100"]
    assert [c["slug"] for c in reading["categories"]] == ["public-safety"]
    assert reading["version"] and reading["analysed_at"]
    assert reading["polarity"] in ("negative", "neutral", "positive")
    assert isinstance(reading["polarity_score"], float)
    assert "火灾" in [w for w, _ in reading["keywords"]]
    assert reading["problems"] is None
    # The same reading as in search results.
    assert hits(client, q="火灾")[post_id]["reading"] == reading
    missing = client.get(f"/api/v1/posts/{post_id + 1000}/reading")
    assert missing.status_code == 404
    assert str(post_id + 1000) in missing.json()["error"]
    assert client.get("/api/v1/posts/not-a-number/reading").status_code == 422


def _source_in(settings: Settings, name: str, region: str) -> tuple[int, str]:
    """A push source whose posts come from `region`."""
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        source = add_source(conn, name=name, kind="push", config={}, region=region)
        token = issue_push_token(conn, source.id)
    engine.dispose()
    return source.id, token


def test_live_feed_and_group_keywords_carry_readings(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    sid, token = push_source(settings)
    push(client, sid, token, POSTS)
    posts = client.get("/api/v1/posts", params={"limit": 100}).json()["posts"]
    by_text = {p["text"]: p for p in posts}
    fire = by_text[POSTS["fire"]]["reading"]
    assert fire["categories"] == ["public-safety"]
    assert any(path.startswith("浙江省/杭州市") for path in fire["regions"])
    assert by_text[POSTS["complaint"]]["reading"]["polarity"] == "negative"

    r = client.get("/api/v1/keywords", params={"q": "自来水 OR 火灾", "k": 5})
    assert r.status_code == 200, r.text
    words = [k["word"] for k in r.json()["keywords"]]
    # Words of the two matching posts (the fire, the poisoned-water rumour), none of the others.
    assert {"厂房", "灭火"} & set(words) and "投毒" in words
    assert not {"西湖", "饭店", "拥堵", "风景"} & set(words)
    bad = client.get("/api/v1/keywords", params={"q": "(自来水"})
    assert bad.status_code == 422
