"""The `board` and `site_search` connectors end to end, and the extraction they rely on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tests.loopback import LoopbackServer, Reply, Request
from tingfeng.collect.connectors.base import CollectContext, get_connector
from tingfeng.collect.errors import CollectError, ConfigError
from tingfeng.collect.extract import extract_article, parse_datetime, select_fields
from tingfeng.collect.fetcher import Fetcher
from tingfeng.collect.items import ItemError, RawItem

WEB = Path(__file__).parent / "fixtures" / "web"
CST = timezone(timedelta(hours=8))

P1 = "/xwzx/index.html"
P2 = "/xwzx/index_1.html"
ARTICLES = {
    "/xwzx/202403/t20240305_1001.html": "article_1001.html",
    "/xwzx/202403/t20240306_1002.html": "article_1002.html",
    "/xwzx/202403/t20240307_1003.html": "article_1003.html",
    "/xwzx/202402/t20240228_0998.html": "article_0998.html",
    "/xwzx/202402/t20240226_0997.html": "article_0997.html",
}


def web(name: str) -> bytes:
    return (WEB / name).read_bytes()


@pytest.fixture
def site(loopback: LoopbackServer) -> LoopbackServer:
    """A Chinese government site: a two-page news column and its articles."""
    loopback.route(P1, Reply(body=web("news_list_p1.html")))
    loopback.route(P2, Reply(body=web("news_list_p2.html")))
    for path, name in ARTICLES.items():
        loopback.route(path, Reply(body=web(name)))
    return loopback


def run(
    kind: str, config: dict, fetcher: Fetcher, **ctx_args: object
) -> tuple[list[RawItem], list[ItemError]]:
    connector = get_connector(kind, config)
    out = list(connector.collect(CollectContext(fetcher=fetcher, **ctx_args)))  # type: ignore[arg-type]
    return [o for o in out if isinstance(o, RawItem)], [o for o in out if isinstance(o, ItemError)]


def board(site: LoopbackServer, **extra: object) -> dict:
    return {
        "url": site.url(P1),
        "item_selector": "ul.news-list li a",
        "next_selector": "div.page a.next",
        "max_pages": 5,
        **extra,
    }


# -- board ------------------------------------------------------------------------------------


def test_board_pages_and_extracts_articles(site: LoopbackServer, fetcher: Fetcher) -> None:
    items, errors = run("board", board(site), fetcher)
    assert errors == []
    assert [i.title for i in items] == [
        "江宁市召开城市供水保障工作推进会",
        "我市启动老旧小区改造民意征集",
        "春季森林防火形势严峻 全市进入高火险期",
        "全市交通运输工作会议召开 今年将新开公交线路12条",
        "江宁市发布2024年为民办实事项目征集结果",
    ]
    water = items[0]
    assert water.kind == "article"
    # Relative links ("./202403/...") are resolved against the list page.
    assert water.url == site.url("/xwzx/202403/t20240305_1001.html")
    assert "42个老旧小区二次供水设施改造" in water.text
    assert "<p>" in water.html
    # Boilerplate (navigation, footer) is not article text.
    assert "网站标识码" not in water.text
    assert water.author == "王晓东"
    assert water.published_at == datetime(2024, 3, 5, 9, 48)
    assert water.extra["list_url"] == site.url(P1)
    assert items[1].published_at == datetime(2024, 3, 6, 14, 20)
    assert items[2].published_at == datetime(2024, 3, 7, 8, 30, tzinfo=CST)
    assert "新增公共充电桩1500个" in items[3].text
    # Page 2 has no next link: paging ends there.
    assert site.hits(P1) == 1 and site.hits(P2) == 1


def test_board_stops_at_a_page_already_known(site: LoopbackServer, fetcher: Fetcher) -> None:
    known = {site.url(p) for p in ARTICLES if p.startswith("/xwzx/202403/")}
    items, errors = run("board", board(site), fetcher, is_known=known.__contains__)
    assert items == [] and errors == []
    # Everything on page 1 is stored already, so page 2 is older still: not fetched.
    assert site.hits(P1) == 1 and site.hits(P2) == 0
    assert all(site.hits(p) == 0 for p in ARTICLES)


def test_board_skips_known_items_and_keeps_paging(site: LoopbackServer, fetcher: Fetcher) -> None:
    known = {site.url("/xwzx/202403/t20240306_1002.html")}
    items, _ = run("board", board(site), fetcher, is_known=known.__contains__)
    assert len(items) == 4
    assert "我市启动老旧小区改造民意征集" not in [i.title for i in items]
    assert site.hits("/xwzx/202403/t20240306_1002.html") == 0
    assert site.hits(P2) == 1


def test_board_limits(site: LoopbackServer, fetcher: Fetcher) -> None:
    items, _ = run("board", board(site, max_items=2), fetcher)
    assert [i.title for i in items] == [
        "江宁市召开城市供水保障工作推进会",
        "我市启动老旧小区改造民意征集",
    ]
    assert site.hits(P2) == 0
    items, _ = run("board", board(site, max_pages=1), fetcher, limit=10)
    assert len(items) == 3


def test_item_page_failure_is_an_item_error(site: LoopbackServer, fetcher: Fetcher) -> None:
    site.route("/xwzx/202403/t20240306_1002.html", Reply(500, b"error", content_type="text/plain"))
    items, errors = run("board", board(site, max_pages=1), fetcher)
    assert [i.title for i in items] == [
        "江宁市召开城市供水保障工作推进会",
        "春季森林防火形势严峻 全市进入高火险期",
    ]
    assert len(errors) == 1
    assert errors[0].where == site.url("/xwzx/202403/t20240306_1002.html")
    assert "500" in errors[0].message


def test_selector_matching_nothing_is_a_config_problem(
    site: LoopbackServer, fetcher: Fetcher
) -> None:
    with pytest.raises(CollectError) as caught:
        run("board", board(site, item_selector="ul.article-list a"), fetcher)
    assert caught.value.permanent
    assert "'ul.article-list a' matched nothing" in caught.value.message
    assert site.url(P1) in caught.value.message


def test_list_page_failure_fails_the_run(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    with pytest.raises(CollectError, match="404"):
        run("board", {"url": loopback.url("/gone/"), "item_selector": "a"}, fetcher)


def test_xpath_and_container_selectors(site: LoopbackServer, fetcher: Fetcher) -> None:
    items, _ = run(
        "board",
        board(site, item_selector="//ul[@class='news-list']/li/a/@href", max_pages=1),
        fetcher,
    )
    assert items[0].title == "江宁市召开城市供水保障工作推进会"
    # A <li> selector: the link is its first descendant with href.
    items, _ = run("board", board(site, item_selector="ul.news-list > li", max_pages=1), fetcher)
    assert len(items) == 3 and items[2].title == "春季森林防火形势严峻 全市进入高火险期"


def test_article_selectors(site: LoopbackServer, fetcher: Fetcher) -> None:
    config = {
        "url": site.url(P2),
        "item_selector": "ul.news-list a",
        "article_selectors": {
            "title": "h1.article-title",
            "content": "#zoom",
            "published_at": "xpath://div[@class='article-info']/span[1]/text()",
        },
    }
    items, errors = run("board", config, fetcher)
    assert errors == []
    traffic = items[0]
    assert traffic.title == "全市交通运输工作会议召开 今年将新开公交线路12条"
    assert traffic.text.splitlines()[0].startswith("2月27日，全市交通运输工作会议召开")
    assert traffic.text.count("\n") == 2  # one line per paragraph
    assert traffic.html.startswith('<div class="article-content" id="zoom">')
    assert traffic.published_at == datetime(2024, 2, 28, 16, 5)
    assert items[1].title == "江宁市发布2024年为民办实事项目征集结果"


def test_content_selector_missing_on_an_item_page(site: LoopbackServer, fetcher: Fetcher) -> None:
    # Gov-style selectors on a column whose 2nd and 3rd articles use other layouts.
    config = board(site, max_pages=1, article_selectors={"content": "#zoom"})
    items, errors = run("board", config, fetcher)
    assert [i.title for i in items] == ["江宁市召开城市供水保障工作推进会"]
    assert len(errors) == 2
    assert "'#zoom' matched nothing" in errors[0].message


def test_board_config_is_validated() -> None:
    assert get_connector("board", {"list_url": "https://e.com/", "item_selector": "a"}).config.url
    with pytest.raises(ConfigError, match="not a valid CSS selector"):
        get_connector("board", {"url": "https://example.com/", "item_selector": "ul[["})
    with pytest.raises(ConfigError, match="XPath"):
        get_connector("board", {"url": "https://example.com/", "item_selector": "//ul[@"})
    with pytest.raises(ConfigError, match="unknown field"):
        get_connector(
            "board",
            {"url": "https://example.com/", "item_selector": "a", "article_selectors": {"x": "p"}},
        )


# -- site_search ------------------------------------------------------------------------------


def test_site_search_keywords(site: LoopbackServer, fetcher: Fetcher) -> None:
    pages = {"供水": "search_water.html", "森林防火": "search_fire.html"}

    def search(req: Request) -> Reply:
        keyword = parse_qs(req.query).get("q", [""])[0]
        return Reply(body=web(pages.get(keyword, "search_empty.html")))

    site.route("/search", search)
    config = {
        "url_template": site.url("/search?q={keyword}"),
        "keywords": ["供水", "没有结果的词", "森林防火"],
        "item_selector": "div.result-item h3 a",
    }
    items, errors = run("site_search", config, fetcher)
    assert errors == []
    assert [(i.title, i.extra["keyword"]) for i in items] == [
        ("江宁市召开城市供水保障工作推进会", "供水"),
        ("我市启动老旧小区改造民意征集", "供水"),
        # 1001 was in the fire results too: not collected twice.
        ("春季森林防火形势严峻 全市进入高火险期", "森林防火"),
    ]
    assert "严禁一切野外用火" in items[2].text
    queries = [r.query for r in site.requests if r.path == "/search"]
    assert queries[0] == "q=%E4%BE%9B%E6%B0%B4"
    assert site.hits("/xwzx/202403/t20240305_1001.html") == 1


def test_site_search_gbk_keyword(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    seen: list[str] = []

    def search(req: Request) -> Reply:
        seen.append(req.query)
        if req.query != "kw=%D5%FE%B8%AE%B2%C9%B9%BA&sort=date":
            return Reply(body=web("search_empty.html"))
        # An old site: GBK bytes, charset only in a <meta>, none in the header.
        return Reply(body=web("search_gbk.html"), content_type="text/html")

    loopback.route("/cgi-bin/search.asp", search)
    loopback.route(
        "/zwgk/2024/0301/790.html",
        Reply(body=web("article_gbk_790.html"), content_type="text/html"),
    )
    loopback.route(
        "/zwgk/2024/0220/781.html",
        Reply(body=web("article_gbk_781.html"), content_type="text/html"),
    )
    config = {
        "url_template": loopback.url("/cgi-bin/search.asp?kw={keyword}&sort=date"),
        "keywords": ["政府采购"],
        "keyword_encoding": "gbk",
        "item_selector": "table.list td.bt a",
        "article_selectors": {"title": "td.bt b", "content": "td#content", "published_at": "td.ly"},
    }
    items, errors = run("site_search", config, fetcher)
    assert seen == ["kw=%D5%FE%B8%AE%B2%C9%B9%BA&sort=date"]
    assert errors == []
    assert [i.title for i in items] == [
        "县政府采购中心2024年第一季度采购意向公开",
        "关于规范政府采购代理机构收费的通知",
    ]
    assert "朱镕基路小学课桌椅更新项目" in items[0].text
    assert items[0].published_at == datetime(2024, 3, 1, 10, 30)
    assert items[1].url == loopback.url("/zwgk/2024/0220/781.html")


def test_site_search_with_no_results_anywhere(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/search", Reply(body=web("search_empty.html")))
    config = {
        "url_template": loopback.url("/search?q={keyword}"),
        "keywords": ["甲", "乙"],
        "item_selector": "div.result-item h3 a",
    }
    with pytest.raises(CollectError, match="matched nothing on any search result page"):
        run("site_search", config, fetcher)


def test_site_search_config_is_validated() -> None:
    base = {"item_selector": "a", "keywords": ["x"]}
    with pytest.raises(ConfigError, match=r"\{keyword\}"):
        get_connector("site_search", {**base, "url_template": "https://example.com/s?q="})
    with pytest.raises(ConfigError, match="unknown encoding"):
        get_connector(
            "site_search",
            {**base, "url_template": "https://e.com/?q={keyword}", "keyword_encoding": "klingon"},
        )
    with pytest.raises(ConfigError, match="keyword"):
        get_connector(
            "site_search", {**base, "keywords": [" "], "url_template": "https://e.com/?q={keyword}"}
        )


# -- extraction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2024年3月5日 14:20", datetime(2024, 3, 5, 14, 20)),
        ("发布时间：2024-03-05 14:20:00", datetime(2024, 3, 5, 14, 20)),
        ("２０２４－０３－０５　１４：２０", datetime(2024, 3, 5, 14, 20)),
        ("2024/3/5 下午2:20", datetime(2024, 3, 5, 14, 20)),
        ("2024年03月05日", datetime(2024, 3, 5)),
        ("Tue, 05 Mar 2024 09:48:00 +0800", datetime(2024, 3, 5, 9, 48, tzinfo=CST)),
        ("Tue Mar 05 14:20:00 +0800 2024", datetime(2024, 3, 5, 14, 20, tzinfo=CST)),
        ("2024-03-05T06:20:00.000Z", datetime(2024, 3, 5, 6, 20, tzinfo=UTC)),
        (1709619600, datetime(2024, 3, 5, 6, 20, tzinfo=UTC)),
        ("1709619600000", datetime(2024, 3, 5, 6, 20, tzinfo=UTC)),
        ("no date here", None),
    ],
)
def test_parse_datetime(written: object, expected: datetime | None) -> None:
    assert parse_datetime(written) == expected


def test_parse_relative_datetimes() -> None:
    now = datetime(2024, 3, 8, 12, 0, tzinfo=UTC)
    assert parse_datetime("3分钟前", now=now) == datetime(2024, 3, 8, 11, 57, tzinfo=UTC)
    # Wall-clock forms are the site's local time: naive.
    assert parse_datetime("昨天 08:30", now=now) == datetime(2024, 3, 7, 8, 30)
    assert parse_datetime("12-30 10:00", now=now) == datetime(2023, 12, 30, 10, 0)
    assert parse_datetime("03-05", now=now) == datetime(2024, 3, 5)


def test_extract_article_falls_back_to_whole_page() -> None:
    # trafilatura finds no article in a page whose only text is its footer (a maintenance
    # notice): the title and the body text still come back.
    article = extract_article(
        "<html><head><title>通知</title></head><body><footer>明日停水。</footer>"
        "<script>var x = 1;</script></body></html>",
        None,
    )
    assert article.title == "通知"
    assert article.text == "明日停水。"
    assert article.html is None


def test_select_fields_meta_and_time() -> None:
    html = (WEB / "article_1003.html").read_text(encoding="utf-8")
    article = select_fields(
        html, "http://x/", {"title": "meta[property='og:title']", "date": "time", "text": ".text p"}
    )
    assert article.title == "春季森林防火形势严峻 全市进入高火险期"
    assert article.published_at == datetime(2024, 3, 7, 8, 30, tzinfo=CST)
    assert article.text.count("\n") == 2
    assert article.author is None
