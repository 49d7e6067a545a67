"""The `json_api` connector and its presets end to end, against recorded API response shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tests.loopback import LoopbackServer, Reply, Request
from tingfeng.collect.connectors.base import CollectContext, get_connector
from tingfeng.collect.connectors.json_api import load_preset, preset_names, to_int
from tingfeng.collect.errors import CollectError, ConfigError
from tingfeng.collect.fetcher import Fetcher
from tingfeng.collect.items import ItemError, RawItem

WEB = Path(__file__).parent / "fixtures" / "web"
JSON = "application/json; charset=utf-8"


def web(name: str) -> bytes:
    return (WEB / name).read_bytes()


def run(
    config: dict, fetcher: Fetcher, **ctx_args: object
) -> tuple[list[RawItem], list[ItemError]]:
    connector = get_connector("json_api", config)
    out = list(connector.collect(CollectContext(fetcher=fetcher, **ctx_args)))  # type: ignore[arg-type]
    return [o for o in out if isinstance(o, RawItem)], [o for o in out if isinstance(o, ItemError)]


def query(req: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(req.query).items()}


def test_shipped_presets() -> None:
    assert set(preset_names()) >= {
        "mastodon_hashtag",
        "mastodon_search",
        "bluesky_search",
        "reddit_search",
        "hackernews_search",
        "weibo_hot",
        "zhihu_hot",
        "baidu_hot",
    }
    for name in preset_names():
        preset = load_preset(name)
        assert preset["base_url"].startswith("https://")
        keywords = ["x"] if "{keyword}" in preset["url_template"] else []
        get_connector("json_api", {"preset": name, "keywords": keywords})  # validates


def test_mastodon_hashtag_pages_by_max_id(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    def timeline(req: Request) -> Reply:
        max_id = query(req).get("max_id")
        if max_id is None:
            return Reply(body=web("mastodon_tag_p1.json"), content_type=JSON)
        if max_id == "112044512000123456":
            return Reply(body=web("mastodon_tag_p2.json"), content_type=JSON)
        return Reply(body=b"[]", content_type=JSON)

    loopback.route("/api/v1/timelines/tag/jiangning", timeline)
    config = {
        "preset": "mastodon_hashtag",
        "base_url": loopback.url("/"),
        "keywords": ["jiangning"],
        "max_pages": 5,
    }
    items, errors = run(config, fetcher)
    assert errors == []
    assert len(items) == 3
    first = items[0]
    assert first.platform == "mastodon"
    assert "城南终于要通地铁" in first.html
    assert first.text is None
    assert first.external_id == "https://mastodon.example/users/linyi/statuses/112044590233421105"
    assert first.url == "https://mastodon.example/@linyi/112044590233421105"
    assert first.author == "linyi"
    assert (first.reposts, first.comments, first.likes) == (12, 3, 41)
    assert first.lang == "zh"
    assert first.published_at == datetime(2024, 3, 8, 6, 12, 41, tzinfo=UTC)
    assert first.extra["keyword"] == "jiangning"
    assert first.extra["author_name"] == "林一"
    assert items[1].author == "chen@other.example"
    assert items[1].extra["tags"] == ["jiangning", "供水"]
    assert "森林高火险期" in items[2].html
    # Page 3 (max_id of page 2's last status) was empty: paging stopped there.
    max_ids = [query(r).get("max_id") for r in loopback.requests if r.path.startswith("/api/")]
    assert max_ids == [None, "112044512000123456", "112040000000000001"]
    assert all(query(r)["limit"] == "40" for r in loopback.requests if r.path.startswith("/api/"))


def test_paging_stops_at_known_items(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route(
        "/api/v1/timelines/tag/jiangning",
        Reply(body=web("mastodon_tag_p1.json"), content_type=JSON),
    )
    config = {"preset": "mastodon_hashtag", "base_url": loopback.url(""), "keywords": ["jiangning"]}
    known = {
        "https://mastodon.example/@linyi/112044590233421105",
        "https://other.example/@chen/9876",
    }
    items, _ = run(config, fetcher, is_known=known.__contains__)
    assert items == []
    assert loopback.hits("/api/v1/timelines/tag/jiangning") == 1


def test_bluesky_cursor_paging(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    def search(req: Request) -> Reply:
        page = (
            "bluesky_search_p2.json"
            if query(req).get("cursor") == "2"
            else "bluesky_search_p1.json"
        )
        return Reply(body=web(page), content_type=JSON)

    loopback.route("/xrpc/app.bsky.feed.searchPosts", search)
    config = {"preset": "bluesky_search", "base_url": loopback.url(""), "keywords": ["江宁"]}
    items, _ = run(config, fetcher)
    assert [i.text for i in items] == [
        "江宁图书馆新馆的周末预约根本抢不到，能不能多放点名额",
        "3号线二期开工，施工期间城南路段交通管制，早高峰又要堵了",
        "供暖延长到3月20日，这个决定好",
    ]
    first = items[0]
    assert first.url == "https://bsky.app/profile/xiaowen.bsky.social/post/3kn4zxw2bqk2a"
    assert first.author == "xiaowen.bsky.social"
    assert (first.likes, first.reposts, first.comments) == (17, 4, 2)
    assert first.published_at == datetime(2024, 3, 8, 7, 1, 22, 114000, tzinfo=UTC)
    assert items[1].extra["reply_parent"].endswith("/3kn4aaaaaaa2a")
    requests = [r for r in loopback.requests if r.path.startswith("/xrpc/")]
    # The keyword is URL-encoded (UTF-8); the second request carries the cursor.
    assert requests[0].query.startswith("q=%E6%B1%9F%E5%AE%81&")
    assert [query(r).get("cursor") for r in requests] == [None, "2"]


def test_reddit_search(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/search.json", Reply(body=web("reddit_search.json"), content_type=JSON))
    config = {"preset": "reddit_search", "base_url": loopback.url(""), "keywords": ["jiangning"]}
    items, _ = run(config, fetcher)
    assert [i.title for i in items] == [
        "Low water pressure in old compounds",
        "Jiangning Metro Line 3 phase II breaks ground, 18.6 km and 13 stations",
    ]
    post = items[0]
    assert post.text.startswith("Anyone else in Jiangning noticed the water pressure")
    assert post.external_id == "t3_1b9xk2q"
    # The relative permalink resolves against the API host.
    assert post.url == loopback.url(
        "/r/China/comments/1b9xk2q/low_water_pressure_in_old_compounds/"
    )
    assert post.published_at == datetime(2024, 3, 8, 8, 0, tzinfo=UTC)
    assert (post.likes, post.comments) == (57, 23)
    assert items[1].extra["link"] == "https://news.jiangning.example.cn/2024/03/08/1101.html"
    # data.after is null: one request only, although max_pages is 2.
    assert loopback.hits("/search.json") == 1


def test_hackernews_page_numbers(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    def search(req: Request) -> Reply:
        if query(req)["page"] == "0":
            return Reply(body=web("hn_search.json"), content_type=JSON)
        return Reply(body=b'{"hits": [], "page": 1, "nbPages": 1}', content_type=JSON)

    loopback.route("/api/v1/search_by_date", search)
    config = {
        "preset": "hackernews_search",
        "base_url": loopback.url(""),
        "keywords": ["jiangning"],
    }
    items, _ = run(config, fetcher)
    comment, story = items
    assert comment.url == "https://news.ycombinator.com/item?id=39600123"
    assert comment.title == "Open data portal of Jiangning city"  # the story's title
    assert "Please don't post the same link twice" in comment.html
    assert comment.reply_to == "39600000"
    assert comment.published_at == datetime(2024, 3, 8, 8, 0, tzinfo=UTC)
    assert story.html is None and story.likes == 42
    assert story.extra["link"] == "https://data.jiangning.example.cn/"
    pages = [query(r)["page"] for r in loopback.requests if r.path == "/api/v1/search_by_date"]
    assert pages == ["0", "1"]


def test_weibo_hot(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/ajax/side/hotSearch", Reply(body=web("weibo_hot.json"), content_type=JSON))
    items, _ = run({"preset": "weibo_hot", "base_url": loopback.url("")}, fetcher)
    # The advert ("荐", is_ad) is skipped.
    assert [i.title for i in items] == ["江宁地铁3号线二期开工", "图书馆新馆预约一位难求"]
    top = items[0]
    assert top.platform == "weibo_hot"
    assert top.text == "江宁地铁3号线二期开工"
    assert top.url == (
        "https://s.weibo.com/weibo?q=%23%E6%B1%9F%E5%AE%81%E5%9C%B0%E9%93%813%E5%8F%B7"
        "%E7%BA%BF%E4%BA%8C%E6%9C%9F%E5%BC%80%E5%B7%A5%23"
    )
    assert top.extra["heat"] == 1268532
    assert top.extra["rank"] == 1
    assert loopback.requests[-1].headers["referer"] == "https://weibo.com/"


def test_zhihu_hot(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route(
        "/topstory/hot-lists/total", Reply(body=web("zhihu_hot.json"), content_type=JSON)
    )
    items, _ = run({"preset": "zhihu_hot", "base_url": loopback.url("")}, fetcher)
    assert [i.url for i in items] == [
        "https://www.zhihu.com/question/648201337",
        "https://www.zhihu.com/question/648100001",
    ]
    assert items[0].title == "如何看待多地老旧小区二次供水改造进度缓慢？"
    assert items[0].text.startswith("最近不少城市通报二次供水改造计划")
    # An empty excerpt falls back to the title.
    assert items[1].text == items[1].title
    assert items[0].extra["heat"] == "1268 万热度"
    assert items[0].comments == 27
    assert items[0].published_at == datetime.fromtimestamp(1709800000, UTC)


def test_baidu_hot_reads_json_in_the_page(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/board", Reply(body=web("baidu_hot.html")))
    items, _ = run({"preset": "baidu_hot", "base_url": loopback.url("")}, fetcher)
    assert [i.title for i in items] == ["江宁地铁3号线二期开工", "春季森林防火"]
    assert items[0].text == "3月8日，地铁3号线二期工程全面开工，线路全长18.6公里。"
    assert items[0].url.startswith("https://www.baidu.com/s?wd=")
    assert items[0].extra["heat"] == "4951235"


def test_mastodon_search_with_token(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/api/v2/search", Reply(body=web("mastodon_search.json"), content_type=JSON))
    config = {
        "preset": "mastodon_search",
        "base_url": loopback.url(""),
        "keywords": ["地铁"],
        "headers": {"Authorization": "Bearer abc"},
        # Overriding one field keeps the preset's others.
        "fields": {"author": "account.display_name"},
    }
    items, _ = run(config, fetcher)
    assert len(items) == 1
    assert items[0].author == "林一"
    assert "城南终于要通地铁" in items[0].html
    request = loopback.requests[-1]
    assert request.headers["authorization"] == "Bearer abc"
    assert query(request)["type"] == "statuses"


def test_custom_mapping_and_empty_results(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    body = {
        "code": 0,
        "result": {
            "list": [
                {
                    "content": "小区门口的路灯坏了一个月",
                    "ctime": "2024-03-08 09:10:00",
                    "uid": 7,
                    "stat": {"like": "1.2万", "reply": "356"},
                },
            ]
        },
    }
    loopback.route("/api/posts", Reply(body=json.dumps(body).encode(), content_type=JSON))
    loopback.route(
        "/api/empty", Reply(body=b'{"code": 0, "result": {"list": []}}', content_type=JSON)
    )
    config = {
        "url_template": loopback.url("/api/posts?kw={keyword}"),
        "keywords": ["路灯"],
        "items_path": "$.result.list[*]",
        "fields": {
            "text": "content",
            "published_at": "ctime",
            "author": "uid",
            "likes": "stat.like",
            "comments": "stat.reply",
        },
        "platform": "forum",
    }
    items, _ = run(config, fetcher)
    assert items[0].text == "小区门口的路灯坏了一个月"
    assert items[0].published_at == datetime(2024, 3, 8, 9, 10)
    assert (items[0].likes, items[0].comments, items[0].author) == (12000, 356, "7")
    assert loopback.requests[-1].query == "kw=%E8%B7%AF%E7%81%AF"
    empty = {**config, "url_template": loopback.url("/api/empty?kw={keyword}")}
    assert run(empty, fetcher) == ([], [])


def test_mapping_errors_are_clear(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/ajax/side/hotSearch", Reply(body=web("weibo_hot.json"), content_type=JSON))
    base = {"preset": "weibo_hot", "base_url": loopback.url("")}
    with pytest.raises(ConfigError) as caught:
        run({**base, "fields": {"text": "content"}}, fetcher)
    assert "text = 'content' matched nothing in any of the 2 items" in caught.value.message
    with pytest.raises(ConfigError) as caught:
        run({**base, "items_path": "$.data.hot[*]"}, fetcher)
    assert "items_path '$.data.hot[*]' matched nothing" in caught.value.message
    assert "(it has: ok, data)" in caught.value.message


def test_non_json_response(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/ajax/side/hotSearch", Reply(body="<html>请登录</html>".encode()))
    with pytest.raises(CollectError, match="is not JSON"):
        run({"preset": "weibo_hot", "base_url": loopback.url("")}, fetcher)


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'tiktok'"):
        get_connector("json_api", {"preset": "tiktok"})
    with pytest.raises(ConfigError, match="no keywords"):
        get_connector("json_api", {"preset": "reddit_search"})
    with pytest.raises(ConfigError, match="unknown field"):
        get_connector(
            "json_api",
            {"url_template": "https://e.com/", "items_path": "$[*]", "fields": {"body": "x"}},
        )
    with pytest.raises(ConfigError, match="JSONPath"):
        get_connector(
            "json_api",
            {"url_template": "https://e.com/", "items_path": "$[", "fields": {"text": "x"}},
        )
    with pytest.raises(ConfigError, match="placeholder"):
        get_connector(
            "json_api",
            {"url_template": "https://e.com/{q}", "items_path": "$[*]", "fields": {"text": "x"}},
        )


def test_to_int() -> None:
    assert [to_int(v) for v in (12, "1,234", "1.2万", "3亿", "3.4k", "热", None)] == [
        12,
        1234,
        12000,
        300_000_000,
        3400,
        None,
        None,
    ]
