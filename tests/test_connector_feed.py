"""The `feed` connector end to end: loopback server, real Fetcher, real feed fixtures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.loopback import LoopbackServer, Reply, Request
from tingfeng.collect.connectors.base import CollectContext, get_connector
from tingfeng.collect.errors import CollectError, ConfigError
from tingfeng.collect.fetcher import Fetcher
from tingfeng.collect.items import ItemError, RawItem

WEB = Path(__file__).parent / "fixtures" / "web"
CST = timezone(timedelta(hours=8))


def web(name: str) -> bytes:
    return (WEB / name).read_bytes()


def run(
    config: dict, fetcher: Fetcher, **ctx_args: object
) -> tuple[list[RawItem], list[ItemError], CollectContext]:
    connector = get_connector("feed", config)
    ctx = CollectContext(fetcher=fetcher, **ctx_args)  # type: ignore[arg-type]
    out = list(connector.collect(ctx))
    items = [o for o in out if isinstance(o, RawItem)]
    errors = [o for o in out if isinstance(o, ItemError)]
    return items, errors, ctx


def test_rss2_entries_and_conditional_get(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    def feed(req: Request) -> Reply:
        if req.headers.get("if-none-match") == '"v1"':
            return Reply(304, b"", headers={"ETag": '"v1"'})
        return Reply(
            body=web("rss2.xml"), content_type="application/rss+xml", headers={"ETag": '"v1"'}
        )

    loopback.route("/rss.xml", feed)
    config = {"url": loopback.url("/rss.xml"), "fetch_article": "never"}
    items, errors, ctx = run(config, fetcher)

    assert errors == []
    assert [i.title for i in items] == [
        "地铁3号线二期工程全面开工",
        "市场监管部门开展春季食品安全专项检查",
        "图书馆新馆试运行 周末预约名额一抢而空",
    ]
    first = items[0]
    assert first.kind == "article"
    assert first.url == "https://news.jiangning.example.cn/2024/03/08/1101.html"
    assert first.external_id == "jnnews-1101"
    assert first.author == "周明"
    assert first.text is None
    # content:encoded wins over the one-line description.
    assert "沿线部分道路将实行交通管制" in first.html
    assert first.published_at == datetime(2024, 3, 8, 9, 30, tzinfo=CST)
    assert first.extra["feed_title"] == "江宁新闻网 - 要闻"
    assert first.extra["tags"] == ["城建"]
    # No guid: the link identifies the entry.
    assert items[2].external_id == items[2].url
    assert items[2].published_at == datetime(2024, 3, 6, 20, 10, tzinfo=UTC)
    assert "12315" in items[1].html

    # The ETag was kept in the state; the next run asks conditionally and gets nothing new.
    assert ctx.state["validators"]
    again, _, _ = run(config, fetcher, state=ctx.state)
    assert again == []
    assert loopback.requests[-1].headers.get("if-none-match") == '"v1"'


def test_rss1_rdf(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/index.rdf", Reply(body=web("rss1.rdf"), content_type="application/rdf+xml"))
    items, _, _ = run({"url": loopback.url("/index.rdf"), "fetch_article": "never"}, fetcher)
    assert [i.title for i in items] == ["老小区停车难，难在哪里", "一条公交线路的调整为何引发争议"]
    assert items[0].author == "林一"
    assert items[0].published_at == datetime(2024, 3, 4, 21, 15, tzinfo=CST)
    assert "立体车库" in items[0].html
    assert "老年乘客并不知情" in items[1].html


def test_atom(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/atom.xml", Reply(body=web("atom.xml"), content_type="application/atom+xml"))
    items, _, _ = run({"url": loopback.url("/atom.xml"), "fetch_article": "never"}, fetcher)
    assert [i.title for i in items] == [
        "关于调整部分区域供暖时间的通知",
        "市民热线三月第一周办理情况通报",
    ]
    notice = items[0]
    assert notice.url == "https://fabu.jiangning.example.cn/notice/88.html"
    assert notice.external_id == "tag:fabu.jiangning.example.cn,2024:notice-88"
    assert notice.author == "市城市管理局"
    # The full content, not the summary, and the published time rather than the update.
    assert "居民无需另行缴费" in notice.html
    assert notice.published_at == datetime(2024, 3, 8, 11, 0, tzinfo=CST)
    assert items[1].published_at == datetime(2024, 3, 7, 18, 0, tzinfo=UTC)
    assert "18342" in items[1].html


def test_json_feed(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/feed.json", Reply(body=web("feed.json"), content_type="application/feed+json"))
    items, _, _ = run({"url": loopback.url("/feed.json"), "fetch_article": "never"}, fetcher)
    assert [i.title for i in items] == ["青年夜校春季班报名开启", "志愿者招募：清明文明祭扫引导"]
    assert "28门课程" in items[0].html
    assert items[0].author == "赵晨"
    assert items[0].published_at == datetime(2024, 3, 5, 19, 0, tzinfo=CST)
    assert items[0].extra["tags"] == ["夜校", "青年"]
    # content_text only: plain text, no html; the feed's author; a naive (zone-less) time.
    assert items[1].html is None
    assert items[1].text == "清明期间需招募文明祭扫引导志愿者200名，年满18周岁即可报名。"
    assert items[1].author == "团市委"
    assert items[1].external_id == "302"
    assert items[1].published_at == datetime(2024, 3, 6, 9, 0)


def test_gbk_feed(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    # Served with a bare text/xml: the gb2312 declaration (with a GBK-only character) rules.
    loopback.route("/rss.xml", Reply(body=web("rss_gbk.xml"), content_type="text/xml"))
    items, _, _ = run({"url": loopback.url("/rss.xml"), "fetch_article": "never"}, fetcher)
    assert [i.title for i in items] == [
        "县政府召开春耕生产工作会议",
        "关于开展2024年度农村低保核查工作的通知",
    ]
    assert "朱镕基路" in items[0].html
    assert items[0].author == "县农业农村局"
    # "2024-03-05 15:30:00" names no zone: naive, read in the source's zone later.
    assert items[0].published_at == datetime(2024, 3, 5, 15, 30)


def _summary_feed(loopback: LoopbackServer) -> None:
    body = web("rss_summary.xml").replace(b"{base}", loopback.url("").encode())
    loopback.route("/xwzx/rss.xml", Reply(body=body, content_type="application/rss+xml"))
    loopback.route("/xwzx/202403/t20240305_1001.html", Reply(body=web("article_1001.html")))
    loopback.route("/xwzx/202403/t20240306_1002.html", Reply(body=web("article_1002.html")))


def test_summary_only_entries_fetch_the_article(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    _summary_feed(loopback)
    loopback.route(
        "/xwzx/202403/t20240307_1003.html", Reply(500, b"oops", content_type="text/plain")
    )
    items, errors, _ = run({"url": loopback.url("/xwzx/rss.xml")}, fetcher)

    assert errors == []
    assert [i.title for i in items] == [
        "江宁市召开城市供水保障工作推进会",
        "我市启动老旧小区改造民意征集",
        "春季森林防火形势严峻 全市进入高火险期",
    ]
    water, survey, fire = items
    assert "6月底前完成42个老旧小区二次供水设施改造" in water.text
    assert "42个老旧小区" in water.html
    assert water.extra["summary"].startswith("3月4日下午")
    # The feed's time (with zone) is kept; the article only fills what the feed lacks.
    assert water.published_at == datetime(2024, 3, 5, 9, 48, tzinfo=CST)
    assert water.author == "王晓东"
    assert "加装电梯" in survey.text
    assert survey.published_at == datetime(2024, 3, 6, 14, 20)
    assert survey.author == "陈思远"
    # The article page failed: the entry still comes, with its summary and the reason.
    assert fire.html == "全市进入高火险期。"
    assert fire.text is None
    assert "500" in fire.extra["article_error"]


def test_known_entries_do_not_fetch_articles(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    _summary_feed(loopback)
    loopback.route("/xwzx/202403/t20240307_1003.html", Reply(body=web("article_1003.html")))
    known = loopback.url("/xwzx/202403/t20240305_1001.html")
    items, _, _ = run(
        {"url": loopback.url("/xwzx/rss.xml")}, fetcher, is_known=lambda k: k == known
    )
    assert loopback.hits("/xwzx/202403/t20240305_1001.html") == 0
    assert loopback.hits("/xwzx/202403/t20240307_1003.html") == 1
    assert "严禁一切野外用火" in items[2].text


def test_fetch_article_never_and_always(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    _summary_feed(loopback)
    loopback.route("/xwzx/202403/t20240307_1003.html", Reply(body=web("article_1003.html")))
    url = loopback.url("/xwzx/rss.xml")
    items, _, _ = run({"url": url, "fetch_article": "never"}, fetcher)
    assert [i.html for i in items][1] == "市住建局启动老旧小区改造民意征集。"
    assert loopback.hits("/xwzx/202403/t20240306_1002.html") == 0
    items, _, _ = run({"url": url, "fetch_article": "always", "max_items": 1}, fetcher)
    assert len(items) == 1
    assert "接诉即办" in items[0].text


def test_limits(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/rss.xml", Reply(body=web("rss2.xml"), content_type="application/rss+xml"))
    items, _, _ = run({"url": loopback.url("/rss.xml"), "fetch_article": "never"}, fetcher, limit=2)
    assert [i.title for i in items] == [
        "地铁3号线二期工程全面开工",
        "市场监管部门开展春季食品安全专项检查",
    ]


def test_broken_feed_yields_what_parsed(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/rss.xml", Reply(body=web("broken_feed.xml"), content_type="text/xml"))
    items, errors, _ = run({"url": loopback.url("/rss.xml"), "fetch_article": "never"}, fetcher)
    assert items[0].title == "区人大代表走访企业 听取发展诉求"
    assert "高新技术企业达到203家" in items[1].html
    assert len(errors) == 1 and "entry 3" in errors[0].where


def test_unparseable_feed_is_an_error(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/rss.xml", Reply(body=web("garbage_feed.xml"), content_type="text/xml"))
    url = loopback.url("/rss.xml")
    with pytest.raises(CollectError) as caught:
        run({"url": url}, fetcher)
    assert f"The feed at {url} is not valid RSS/Atom/JSON Feed" in caught.value.message
    assert "check that the URL points to a feed" in caught.value.message


def test_html_page_is_not_a_feed(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/xwzx/", Reply(body=web("news_list_p1.html")))
    with pytest.raises(CollectError, match="not valid RSS/Atom/JSON Feed"):
        run({"url": loopback.url("/xwzx/")}, fetcher)


def test_json_that_is_not_a_json_feed(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/api", Reply(body=b'{"ok": 1, "data": []}', content_type="application/json"))
    with pytest.raises(CollectError, match=r"jsonfeed\.org"):
        run({"url": loopback.url("/api")}, fetcher)


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="url"):
        get_connector("feed", {"url": "ftp://example.com/rss"})
    with pytest.raises(ConfigError, match="fetch_article"):
        get_connector("feed", {"url": "https://example.com/rss", "fetch_article": "sometimes"})
