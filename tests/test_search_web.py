"""The search pages, served by a real uvicorn on loopback: filters, errors in place, a post's
detail, and the export of the results (parsed back)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from openpyxl import load_workbook
from playwright.sync_api import expect
from sqlalchemy import insert, select

from tests.conftest import add_person, push_source, screenshot, sign_in, signed_in_page
from tingfeng.collect.sources import add_source, issue_push_token
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.models import Event, EventPost, Evidence, Post
from tingfeng.settings import Settings

NOW = datetime.now(UTC)
RECENT = (NOW - timedelta(days=2)).isoformat()
OLD = (NOW - timedelta(days=40)).isoformat()
POSTS = {
    "fire": ("浙江杭州萧山区一厂房发生火灾，消防救援人员正在现场灭火，暂无人员伤亡。", RECENT),
    "complaint": ("这家医院太差劲了，服务态度恶劣，收费又贵，再也不来了！", RECENT),
    "praise": ("今天去杭州西湖边的社区医院看病，医生态度很好，心情特别好", OLD),
    "rumour": ("网传某地医院自来水被投毒，紧急扩散！转发告诉家人千万不要喝！", RECENT),
    "english": ("The city hospital opened a new emergency ward this week.", RECENT),
}
ALL = "火灾 OR 医院 OR hospital"


def push(
    client: httpx.Client, settings: Settings, posts: list[dict[str, Any]], name: str = "对接平台"
) -> int:
    sid, token = push_source(settings, name=name)
    r = client.post(
        f"/api/v1/sources/{sid}/posts", json={"posts": posts},
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == len(posts), r.json()
    return sid


def post_ids(client: httpx.Client, q: str = ALL) -> dict[str, int]:
    """Post ids by name (POSTS), found by their text."""
    hits = client.get("/api/v1/search", params={"q": q, "limit": 200}).json()["hits"]
    posts = client.get("/api/v1/posts", params={"limit": 200}).json()["posts"]
    texts = {p["id"]: p["text"] for p in posts}
    found = {h["id"]: texts[h["id"]] for h in hits}
    return {name: pid for name, (text, _) in POSTS.items() for pid, t in found.items() if t == text}


def add_event(settings: Settings, post_ids: list[int], level: str, title: str) -> int:
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        event_id = conn.execute(
            insert(Event).values(title=title, level=level, posts=len(post_ids), status="open")
        ).inserted_primary_key[0]
        for pid in post_ids:
            conn.execute(
                insert(EventPost).values(post_id=pid, event_id=event_id, joined_by="content")
            )
    engine.dispose()
    return int(event_id)


def listed(html: str) -> set[int]:
    """The ids of the posts a results page lists."""
    return {int(x) for x in re.findall(r'<article class="post hit" data-post="(\d+)"', html)}


def page_ids(client: httpx.Client, **params: Any) -> set[int]:
    r = client.get("/search", params={"q": ALL, **params})
    assert r.status_code == 200, r.text
    assert 'id="filter-error"' not in r.text and 'id="q-error"' not in r.text, r.text[-2000:]
    return listed(r.text)


@pytest.fixture
def stored(web):  # type: ignore[no-untyped-def]
    """POSTS pushed through a push source (one more source holds the English post)."""
    client, settings = web
    items = [
        {"id": name, "text": text, "published_at": when, "title": f"标题{name}"}
        for name, (text, when) in POSTS.items()
        if name != "english"
    ]
    push(client, settings, items)
    text, when = POSTS["english"]
    english_source = push(
        client, settings, [{"id": "en", "text": text, "published_at": when}], name="English feed"
    )
    ids = post_ids(client)
    assert set(ids) == set(POSTS)
    return client, settings, ids, english_source


def test_filters_narrow_the_results_and_live_in_the_url(stored) -> None:  # type: ignore[no-untyped-def]
    client, settings, ids, english_source = stored
    major = add_event(settings, [ids["fire"]], "major", "萧山厂房火灾")
    add_event(settings, [ids["rumour"]], "general", "自来水投毒传言")

    assert page_ids(client) == set(ids.values())
    assert page_ids(client, level="major") == {ids["fire"]}
    assert page_ids(client, level=["major", "general"]) == {ids["fire"], ids["rumour"]}
    assert page_ids(client, polarity="negative") >= {ids["complaint"]}
    assert ids["praise"] not in page_ids(client, polarity="negative")
    assert page_ids(client, category="public-safety") == {ids["fire"]}
    assert page_ids(client, region="萧山区") == {ids["fire"]}
    assert page_ids(client, needs_verification="true", q="医院") == {ids["rumour"]}
    assert page_ids(client, source_id=english_source) == {ids["english"]}
    assert page_ids(client, post_lang="en") == {ids["english"]}
    # Time: the quick ranges, and dates (a bare `until` date includes its day).
    assert ids["praise"] not in page_ids(client, within="7d")
    assert page_ids(client, within="7d") == set(ids.values()) - {ids["praise"]}
    office = ZoneInfo(settings.default_timezone)  # a bare date is a day in the office's zone
    old_day = datetime.fromisoformat(OLD).astimezone(office).date().isoformat()
    assert page_ids(client, since=old_day, until=old_day) == {ids["praise"]}
    assert ids["praise"] not in page_ids(
        client, since=(NOW - timedelta(days=10)).date().isoformat()
    )

    # The page: the level badge links to the event, the total is shown, the filters are kept
    # in the form and in the export links.
    r = client.get("/search", params={"q": ALL, "level": "major", "sort": "relevance"})
    assert f'href="/events/{major}"' in r.text
    assert re.search(r'<strong id="total">共 1 条</strong>', r.text)
    assert re.search(r'name="level" value="major" checked', r.text)
    href = re.search(r'href="([^"]+)" id="export-csv"', r.text).group(1).replace("&amp;", "&")
    query = parse_qs(urlsplit(href).query)
    assert (
        query["level"] == ["major"]
        and query["format"] == ["csv"]
        and query["sort"] == ["relevance"]
    )
    # The API takes the same filters and returns the total.
    api = client.get("/api/v1/search", params={"q": ALL, "level": "重大"}).json()
    assert api["total"] == 1 and [h["id"] for h in api["hits"]] == [ids["fire"]]


def test_pagination_keeps_the_filters(stored) -> None:  # type: ignore[no-untyped-def]
    client, settings, _ids, _ = stored
    push(client, settings, [{"id": f"p{n}", "text": f"第{n}号通告：医院门诊调整"} for n in range(25)],
         name="通告")  # fmt: skip
    first = client.get("/search", params={"q": "通告", "within": "30d"}).text
    assert "共 25 条" in first and len(listed(first)) == 20
    nxt = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    assert "within=30d" in nxt and "page=2" in nxt
    second = client.get(nxt).text
    assert len(listed(second)) == 5 and not listed(first) & listed(second)


def test_query_errors_are_shown_in_place_and_refused_by_the_api(web) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    r = client.get("/search", params={"q": "(医院 投诉"})
    assert r.status_code == 200
    error = re.search(r'<p class="error" id="q-error".*?</p>', r.text, re.S).group(0)
    assert "not closed" in error and "第 1 个字符" in error
    assert '<span class="err-at">(</span>' in error  # the character it points at
    api = client.get("/api/v1/search", params={"q": "(医院 投诉"})
    assert api.status_code == 422 and "position 1" in api.json()["error"]

    # The topic-language filter: its error under its own field, with the position.
    r = client.get("/search", params={"q": "医院", "where": "投诉 NEAR/ 广告"})
    where = re.search(r'<p class="error" id="where-error".*?</p>', r.text, re.S).group(0)
    assert "NEAR" in where and "err-at" in where
    assert client.get("/api/v1/search", params={"q": "医院", "where": "(投诉"}).status_code == 422

    bad_date = client.get("/search", params={"q": "医院", "since": "昨天"}).text
    assert 'id="filter-error"' in bad_date and "昨天" in bad_date
    for params in ({"level": "huge"}, {"since": "not a date"}, {"region": "火星"}):
        api = client.get("/api/v1/search", params={"q": "医院", **params})
        assert api.status_code == 422 and api.json()["error"], params
    assert (
        "huge"
        in client.get("/api/v1/search", params={"q": "医院", "level": "huge"}).json()["error"]
    )


XSS_TITLE = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


def test_post_detail_shows_the_reading_its_group_event_and_evidence(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    text = "浙江杭州萧山区一厂房发生火灾，消防救援人员正在现场灭火，暂无人员伤亡。"
    push(client, settings, [{
        "id": "a", "title": XSS_TITLE, "text": text, "author": "<b>网友甲</b>",
        "url": "javascript:alert(1)",
        "html": f'<p>{text}<script>window.__xss=3</script><img src="https://t.example/p.gif"></p>',
    }])  # fmt: skip
    engine_url = settings.database_url
    other = _source(settings, "转载站")
    r = client.post(
        f"/api/v1/sources/{other[0]}/posts", json={"posts": [{"id": "b", "text": text}]},
        headers={"Authorization": f"Bearer {other[1]}"},
    )  # fmt: skip
    assert r.json()["stored"] == 1
    hits = client.get("/api/v1/search", params={"q": "萧山区 厂房", "sort": "oldest"}).json()[
        "hits"
    ]
    first, copy = hits[0]["id"], hits[1]["id"]
    event = add_event(settings, [first], "serious", "萧山厂房火灾")
    engine = make_engine(engine_url)
    with write_transaction(engine) as conn:
        conn.execute(insert(Evidence).values(
            post_id=first, category="post", seq=1, number="原帖-001", url="https://x.example/1",
            status="captured", warc_sha256="ab" * 32, captured_at=NOW,
        ))  # fmt: skip
    engine.dispose()

    page = client.get(f"/posts/{first}")
    assert page.status_code == 200
    html = page.text
    # Untrusted fields stay text: escaped, the link refused, the HTML sanitised.
    assert "<script>window.__xss" not in html and "&lt;script&gt;window.__xss=1" in html
    assert 'onerror="window' not in html and 'href="javascript' not in html
    assert "&lt;b&gt;网友甲&lt;/b&gt;" in html
    assert f'<div class="orig-html"><p>{text}</p></div>' in html  # no script, no image
    # The reading, in words.
    reading = re.search(r'<section class="card" id="reading">.*?</section>', html, re.S).group(0)
    assert "公共安全" in reading and "火灾" in reading  # the category and its matched keyword
    assert "浙江省 / 杭州市 / 萧山区" in reading and "文中提及" in reading
    assert "需核实" in reading and "得分" in reading
    # The duplicate group, the event, the evidence.
    assert f'href="/posts/{copy}"' in html and "同组另有 1 条" in html
    assert f'href="/events/{event}"' in html and "较大" in html
    assert "原帖-001" in html and "abababababababab" in html
    assert 'id="open-case"' in html and f'name="post_id" value="{first}"' in html

    api = client.get(f"/api/v1/posts/{first}").json()
    assert api["title"] == XSS_TITLE and api["source"]["name"] == "对接平台"
    assert [c["slug"] for c in api["reading"]["categories"]] == ["public-safety"]
    assert api["duplicates"]["total"] == 1 and api["duplicates"]["posts"][0]["id"] == copy
    assert [(e["id"], e["level"]) for e in api["events"]] == [(event, "serious")]
    assert api["evidence"][0]["number"] == "原帖-001"
    assert client.get(f"/api/v1/posts/{copy}").json()["duplicates"]["group"] == first
    assert client.get(f"/api/v1/posts/{first + 999}").status_code == 404
    assert client.get(f"/posts/{first + 999}").status_code == 404

    # The button to open a case is for staff only; a viewer reads the same page without it.
    add_person(settings, "reader", "viewer")
    with httpx.Client(base_url=client.base_url) as viewer:
        sign_in(viewer, "reader")
        seen = viewer.get(f"/posts/{first}").text
        assert "公共安全" in seen and 'id="open-case"' not in seen
    opened = client.post("/cases/open", data={"post_id": first, "origin": "online",
                                              "csrf_token": client.headers["X-CSRF-Token"]})  # fmt: skip
    assert opened.status_code == 303, opened.text


def _source(settings: Settings, name: str) -> tuple[int, str]:
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        source = add_source(conn, name=name, kind="push", config={})
        token = issue_push_token(conn, source.id)
    engine.dispose()
    return source.id, token


FORMULAS = ['=HYPERLINK("http://evil.example","点我")', "+1+2", "-3-4", "@SUM(A1)"]


def test_export_csv_and_xlsx_hold_the_rows_with_formulas_neutralised(web, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    items = [
        {"id": f"f{n}", "title": formula, "text": f"公告{n}：医院停车收费调整", "author": formula,
         "url": f"https://news.example/{n}", "published_at": RECENT}
        for n, formula in enumerate(FORMULAS)
    ]  # fmt: skip
    push(client, settings, items)
    params = {"q": "医院", "polarity": ["negative", "neutral", "positive"]}

    r = client.get("/api/v1/search/export", params={**params, "format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    disposition = r.headers["content-disposition"]
    assert disposition.startswith("attachment;") and ".csv" in disposition
    assert "filename*=UTF-8''" in disposition
    assert r.content.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads the Chinese right
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    header, body = rows[0], rows[1:]
    assert header[:4] == ["编号", "发布时间", "信源名称", "标题"] and "所属事件" in header
    assert len(body) == len(FORMULAS) and r.headers["x-export-truncated"] == "false"
    titles = {row[header.index("标题")] for row in body}
    assert titles == {"'" + f for f in FORMULAS}
    assert {row[header.index("作者")] for row in body} == {"'" + f for f in FORMULAS}
    assert all(row[header.index("信源名称")] == "对接平台" for row in body)
    assert all(row[header.index("链接")].startswith("https://news.example/") for row in body)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row[1]) for row in body)

    x = client.get("/api/v1/search/export", params={**params, "format": "xlsx"})
    assert x.status_code == 200 and ".xlsx" in x.headers["content-disposition"]
    book = load_workbook(io.BytesIO(x.content))
    sheet = book.worksheets[0]
    values = list(sheet.iter_rows(values_only=True))
    assert list(values[0][:4]) == ["编号", "发布时间", "信源名称", "标题"]
    assert len(values) == len(FORMULAS) + 1
    cells = [c for row in sheet.iter_rows(min_row=2) for c in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"]  # no formula anywhere
    assert {row[3] for row in values[1:]} == {"'" + f for f in FORMULAS}
    assert isinstance(values[1][1], datetime)
    about = dict(book.worksheets[1].iter_rows(values_only=True))
    assert about["检索式"] == "医院" and about["导出条数"] == str(len(FORMULAS))

    # More matches than an export holds: cut, and said so in the headers and the file.
    monkeypatch.setattr("tingfeng.search.export.MAX_EXPORT_ROWS", 2)
    cut = client.get("/api/v1/search/export", params={**params, "format": "xlsx"})
    assert cut.headers["x-export-truncated"] == "true" and cut.headers["x-export-total"] == "4"
    assert "first2" in cut.headers["content-disposition"]
    book = load_workbook(io.BytesIO(cut.content))
    assert book.worksheets[0].max_row == 3
    assert "注意" in dict(book.worksheets[1].iter_rows(values_only=True))
    bad = client.get("/api/v1/search/export", params={"q": "(医院", "format": "csv"})
    assert bad.status_code == 422 and "not closed" in bad.json()["error"]
    assert (
        client.get("/api/v1/search/export", params={"q": "医院", "format": "pdf"}).status_code
        == 422
    )


def test_search_filter_detail_and_export_in_the_browser(stored, browser) -> None:  # type: ignore[no-untyped-def]
    client, settings, ids, _ = stored
    add_event(settings, [ids["fire"]], "major", "萧山厂房火灾")
    page = signed_in_page(browser, client)
    # Chromium asks for English; the office's language is chosen (and kept in a cookie).
    page.goto(str(client.base_url) + "/search?lang=zh_CN")
    page.fill("#q", ALL)
    page.click("#filters summary")
    page.check('input[name="level"][value="major"]')
    page.click("#filters button[type=submit]")
    expect(page.locator("#total")).to_have_text("共 1 条")
    expect(page.locator("article.hit")).to_have_count(1)
    assert "level=major" in page.url  # bookmarkable
    expect(page.locator("article.hit mark").first).to_be_visible()
    screenshot(page, "search")

    page.click("article.hit h3 a")
    expect(page.locator("#post-title")).to_have_text("标题fire")
    expect(page.locator("#reading-categories")).to_contain_text("公共安全")
    screenshot(page, "post")

    page.go_back()
    with page.expect_download() as info:
        page.click("#export-csv")
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    content = open(download.path(), encoding="utf-8-sig").read()  # noqa: SIM115
    rows = list(csv.reader(io.StringIO(content)))
    assert [int(row[0]) for row in rows[1:]] == [ids["fire"]]
    page.context.close()


def test_event_level_filter_and_export_rows_on_both_databases(db_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    """The service side of the level filter and of the export, on SQLite and PostgreSQL."""
    from tingfeng.collect.items import RawItem
    from tingfeng.db.migrate import upgrade
    from tingfeng.ingest.ingestor import Ingestor, SourceRef
    from tingfeng.search.export import export_rows
    from tingfeng.search.service import SearchFilters, count

    engine = make_engine(db_url)
    upgrade(engine)
    with write_transaction(engine) as conn:
        source = add_source(conn, name="t", kind="lead", config={}, timezone="Asia/Shanghai")
    items = [
        RawItem(text=text, external_id=name, published_at=datetime.fromisoformat(when))
        for name, (text, when) in POSTS.items()
    ]
    Ingestor(engine, settings.model_copy(update={"database_url": db_url})).ingest(
        SourceRef(source.id, "Asia/Shanghai"), items
    )
    with engine.connect() as conn:
        ids = dict(conn.execute(select(Post.external_id, Post.id)).all())
    with write_transaction(engine) as conn:
        event = conn.execute(insert(Event).values(title="火灾", level="critical", posts=1))
        conn.execute(
            insert(EventPost).values(post_id=ids["fire"], event_id=event.inserted_primary_key[0])
        )
    with engine.connect() as conn:
        critical = SearchFilters(event_levels=["critical"])
        assert count(conn, ALL, critical) == 1
        assert count(conn, ALL, SearchFilters(event_levels=["general"])) == 0
        assert count(conn, ALL) == len(POSTS)
        for sort in ("newest", "oldest", "relevance"):
            result = export_rows(conn, ALL, SearchFilters(), sort=sort, limit=3)
            assert len(result.rows) == 3 and result.total == len(POSTS) and result.truncated
        newest = export_rows(conn, ALL, SearchFilters(), sort="newest").rows
        assert newest[-1]["id"] == ids["praise"]  # the oldest post comes last
        (fire,) = export_rows(conn, ALL, critical, label=lambda kind, v: f"{kind}:{v}").rows
        assert fire["event"].endswith("火灾 [level:critical]")
        assert fire["categories"] == "category:public-safety"
        assert fire["regions"] == "浙江省/杭州市/萧山区" and fire["source"] == "t"
    engine.dispose()
