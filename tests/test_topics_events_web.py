"""The topic and event pages against a real server: the preview's difference against the saved
version on a small real corpus, the event page's explanation and chart data, level overrides by
role, the events list's filters and pages, and the pages in Chromium."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from markupsafe import escape
from sqlalchemy import insert

from tests.conftest import add_person, push_source, screenshot, sign_in, signed_in_page
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.models import Event
from tingfeng.events.browse import spread_tree
from tingfeng.events.profile import refresh_event

# A small corpus for a topic "医院 AND 投诉" and a draft "医院 AND (投诉 OR 举报) -广告".
CORPUS = {
    "fees": "县医院收费不透明，患者投诉无门",
    "advert": "卫生院门口贴满小广告：医院投诉热线",
    "parking": "县医院停车难，市民向热线举报",
    "weather": "今天天气很好，适合出门散步",
    "old": "三年前医院投诉处理慢的旧帖",  # published 60 days ago
}


def push(client: httpx.Client, source: tuple[int, str], posts: list[dict[str, Any]]) -> None:
    sid, token = source
    r = client.post(
        f"/api/v1/sources/{sid}/posts", headers={"Authorization": f"Bearer {token}"}, json=posts
    )
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == len(posts), r.text


def post_ids(client: httpx.Client) -> dict[str, int]:
    """Text → post id of every stored post."""
    posts = client.get("/api/v1/posts", params={"limit": 500}).json()["posts"]
    return {p["text"]: p["id"] for p in posts}


def fill_corpus(client: httpx.Client, settings: Any) -> dict[str, int]:
    now = datetime.now(UTC)
    push(
        client,
        push_source(settings),
        [
            {"id": key, "text": text,
             "published_at": (now - timedelta(days=60 if key == "old" else 0, minutes=5)).isoformat()}
            for key, text in CORPUS.items()
        ],
    )  # fmt: skip
    ids = post_ids(client)
    return {key: ids[text] for key, text in CORPUS.items()}


def sample_ids(samples: list[dict[str, Any]]) -> list[int]:
    return sorted(s["id"] for s in samples)


def test_preview_counts_the_difference_against_the_saved_version(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    made = client.post("/api/v1/topics", json={"name": "医疗投诉", "query": "医院 AND 投诉"})
    assert made.status_code == 201
    tid = made.json()["id"]
    ids = fill_corpus(client, settings)
    draft = {"query": "医院 AND (投诉 OR 举报)", "exclusions": ["广告"], "topic_id": tid}

    # Every stored post: the saved version matches fees, advert, old; the draft fees, parking, old.
    every = client.post("/api/v1/topics/preview", json=draft).json()
    assert every["count"] == 3 and every["since"] is None
    assert sum(n for _day, n in every["per_day"]) == 3
    diff = every["diff"]
    assert (diff["saved_version"], diff["saved_count"]) == (1, 3)
    assert (diff["added"], diff["removed"]) == (1, 1)
    assert sample_ids(diff["added_samples"]) == [ids["parking"]]
    assert sample_ids(diff["removed_samples"]) == [ids["advert"]]
    assert sample_ids(every["samples"]) == sorted([ids["fees"], ids["parking"], ids["old"]])

    # The last 30 days: both queries over the same posts, so the old post leaves both sides.
    recent = client.post("/api/v1/topics/preview", json={**draft, "days": 30}).json()
    assert recent["count"] == 2 and recent["diff"]["saved_count"] == 2
    assert (recent["diff"]["added"], recent["diff"]["removed"]) == (1, 1)

    # The same query as saved: no difference at all.
    same = client.post(
        "/api/v1/topics/preview", json={"query": "医院 AND 投诉", "topic_id": tid}
    ).json()
    assert (same["diff"]["added"], same["diff"]["removed"]) == (0, 0)

    broken = client.post("/api/v1/topics/preview", json={**draft, "query": "医院 AND (投诉"})
    assert broken.status_code == 422 and broken.json()["error"]["position"] == 10
    assert client.post("/api/v1/topics/preview", json={**draft, "topic_id": 999}).status_code == 404

    # Saving makes version 2, kept with who saved it; the list shows the last day's matches.
    saved = client.patch(f"/api/v1/topics/{tid}", json=draft).json()
    assert saved["version"] == 2
    page = client.get(f"/topics/{tid}").text
    assert re.search(r'<tr data-version="2">.*?tester', page, re.S)
    assert '<tr data-version="1">' in page and 'class="load-version"' in page
    listing = client.get("/topics").text
    # fees and advert were published in the last 24 h and matched version 1 on arrival.
    assert 'data-matches-24h="2"' in listing
    assert f'<a href="/topics/{tid}">医疗投诉</a>' in listing
    assert client.get("/topics/999").status_code == 404


def test_viewers_see_the_topics_without_the_editor(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    tid = client.post("/api/v1/topics", json={"name": "供暖", "query": "供暖"}).json()["id"]
    add_person(settings, "watcher", "viewer")
    with httpx.Client(base_url=str(client.base_url), timeout=30) as viewer:
        sign_in(viewer, "watcher")
        assert 'id="topic-form"' not in viewer.get("/topics").text
        page = viewer.get(f"/topics/{tid}").text
        assert "供暖" in page and 'id="topic-form"' not in page
        assert viewer.patch(f"/api/v1/topics/{tid}", json={"query": "暖气"}).status_code == 403


# --- events ----------------------------------------------------------------------------------

HOSTILE_AUTHOR = '<img src=x onerror="window.__xss=1">'


def make_event(client: httpx.Client, settings: Any) -> tuple[int, dict[str, int], datetime]:
    """An event of an original post and eight reposts over three hours, profiled and graded.

    Returns the event id, post id by external id, and the hour of the original post (UTC).
    """
    client.post("/api/v1/topics", json={"name": "化工厂", "query": "化工厂"})
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    text = "浙江某县化工厂发生爆炸起火，现场浓烟滚滚，已造成2人受伤，消防正在灭火。"
    # (external id, reposts of, minutes after the original, author)
    tree = [
        ("o", None, 5, "县融媒体中心"),
        ("a", "o", 15, "甲"),
        ("b", "o", 40, "乙"),
        ("c", "a", 70, HOSTILE_AUTHOR),
        ("d", "a", 55, "丁"),
        ("e", "c", 80, "戊"),
        ("f", "o", 130, "己"),
        ("g", "f", 135, "庚"),
        ("h", "f", 150, "辛"),
    ]
    push(
        client,
        push_source(settings, "微博对接"),
        [
            {"id": key, "text": text if parent is None else f"转发：{text} //@{key}",
             "author": author, "reposts_of": parent,
             "published_at": (start + timedelta(minutes=minutes)).isoformat()}
            for key, parent, minutes, author in tree
        ],
    )  # fmt: skip
    listed = client.get("/api/v1/events").json()
    events = listed["events"]
    assert len(events) == 1 and listed["total"] == 1, listed
    eid = events[0]["id"]
    posts = client.get(f"/api/v1/events/{eid}/posts").json()["posts"]
    assert len(posts) == len(tree)
    # Profile and grade now, not when the ingest's refresh would next run.
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        refresh_event(conn, eid)
    engine.dispose()
    by_text = {}
    for p in posts:
        key = p["text"].rsplit("//@", 1)[1] if "//@" in p["text"] else "o"
        by_text[key] = p["id"]
    return eid, by_text, start


def json_block(page: str, block_id: str) -> Any:
    m = re.search(rf'<script type="application/json" id="{block_id}">(.*?)</script>', page, re.S)
    assert m, f"no JSON block {block_id}"
    return json.loads(m.group(1))


def test_event_page_explains_the_level_and_carries_the_chart_data(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    eid, ids, start = make_event(client, settings)
    detail = client.get(f"/api/v1/events/{eid}").json()
    page = client.get(f"/events/{eid}").text

    explanation = re.search(r'<p id="explanation">(.*?)</p>', page, re.S)
    assert explanation and explanation.group(1) == escape(detail["grade"]["explanation_zh"])
    reasons = re.search(r'<ul id="grade-reasons" class="reasons">(.*?)</ul>', page, re.S)
    assert reasons and reasons.group(1).count("<li>") == len(detail["grade"]["factors"])
    assert f'id="level-badge" data-level="{detail["level"]}"' in page

    # Posts per hour, from the posts: 4 in the first hour, 2 in the second, 3 in the third.
    timeline = json_block(page, "timeline-data")
    hours = [start + timedelta(hours=h) for h in range(3)]
    assert timeline["hours"] == [h.isoformat() for h in hours]
    assert timeline["counts"] == [4, 2, 3] and timeline["undated"] == 0
    # Labels in the office's time zone (Asia/Shanghai: UTC+8).
    assert timeline["labels"][0] == (hours[0] + timedelta(hours=8)).strftime("%m-%d %H:00")

    # The repost tree under the original, each repost under the post it reposted.
    tree = json_block(page, "spread-data")
    assert (tree["size"], tree["shown"], tree["capped"], tree["depth"]) == (9, 9, False, 3)
    root = tree["tree"]
    assert root["post_id"] == ids["o"] == detail["first_post_id"]
    assert sorted(c["post_id"] for c in root["children"]) == sorted([ids["a"], ids["b"], ids["f"]])
    a = next(c for c in root["children"] if c["post_id"] == ids["a"])
    assert sorted(c["post_id"] for c in a["children"]) == sorted([ids["c"], ids["d"]])

    # The list finds it by the topic its posts matched, and not by another topic.
    topics = {t["name"]: t["id"] for t in client.get("/api/v1/topics").json()["topics"]}
    other = client.post("/api/v1/topics", json={"name": "供暖", "query": "供暖"}).json()["id"]
    assert f'data-event="{eid}"' in client.get("/events", params={"topic": topics["化工厂"]}).text
    assert f'data-event="{eid}"' not in client.get("/events", params={"topic": other}).text
    by_topic = client.get("/api/v1/events", params={"topic_id": topics["化工厂"]}).json()
    assert [e["id"] for e in by_topic["events"]] == [eid]

    # The origin, the sources, and untrusted bylines printed inert.
    assert 'id="origin"' in page and "县融媒体中心" in page and "微博对接" in page
    assert HOSTILE_AUTHOR not in page and "&lt;img src=x" in page
    assert 'id="open-case"' in page and f'name="event_id" value="{eid}"' in page

    # Past the cap the tree keeps the generations nearest the origin, and says it is cut.
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        cut = spread_tree(conn, eid, ids["o"], max_nodes=4)
    engine.dispose()
    assert cut is not None and (cut["shown"], cut["size"], cut["capped"]) == (4, 9, True)
    assert sorted(c["post_id"] for c in cut["tree"]["children"]) == sorted(
        [ids["a"], ids["b"], ids["f"]]
    )
    assert all(not c["children"] for c in cut["tree"]["children"])

    # The explanation and its reasons in the page's language.
    english = client.get(f"/events/{eid}?lang=en").text
    assert f'<p id="explanation">{escape(detail["grade"]["explanation_en"])}</p>' in english
    label = detail["grade"]["factors"][0]["label_en"]
    assert label in english


def test_override_is_refused_to_a_viewer_and_recorded_for_an_analyst(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        eid = conn.execute(
            insert(Event).values(title="某小区垃圾清运不及时", level="general", posts=0)
        ).inserted_primary_key[0]
    engine.dispose()
    add_person(settings, "watcher", "viewer")
    add_person(settings, "ana", "analyst")
    with httpx.Client(base_url=str(client.base_url), timeout=30) as viewer:
        sign_in(viewer, "watcher")
        refused = viewer.post(
            f"/api/v1/events/{eid}/grade", json={"level": "major", "reason": "看看"}
        )
        assert refused.status_code == 403
        assert 'id="override-form"' not in viewer.get(f"/events/{eid}").text
    assert client.get(f"/api/v1/events/{eid}").json()["level"] == "general"
    with httpx.Client(base_url=str(client.base_url), timeout=30) as analyst:
        sign_in(analyst, "ana")
        assert 'id="override-form"' in analyst.get(f"/events/{eid}").text
        no_reason = analyst.post(f"/api/v1/events/{eid}/grade", json={"level": "major"})
        assert no_reason.status_code == 422 and "reason" in no_reason.json()["error"]
        done = analyst.post(
            f"/api/v1/events/{eid}/grade", json={"level": "major", "reason": "涉及群体性投诉"}
        )
        assert done.status_code == 200, done.text
    detail = client.get(f"/api/v1/events/{eid}").json()
    assert detail["level"] == "major"
    assert detail["grade"]["override"]["reason"] == "涉及群体性投诉"
    assert detail["grade"]["override"]["by"] == "ana"
    last = detail["history"][-1]
    assert (last["overridden"], last["reason"], last["decided_by"]) == (
        True,
        "涉及群体性投诉",
        "ana",
    )
    page = client.get(f"/events/{eid}").text
    assert 'id="level-badge" data-level="major">重大</span>' in page
    assert 'id="override-info"' in page and "涉及群体性投诉" in page


def test_events_list_filters_and_pages(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    now = datetime.now(UTC)
    levels = ["general", "serious", "major", "critical"]
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        for i in range(34):
            conn.execute(
                insert(Event).values(
                    title=f"事件{i:02d}", level=levels[i % 4], heat=float(i), posts=i,
                    first_seen_at=now - timedelta(days=i), last_seen_at=now - timedelta(days=i),
                    status="merged" if i == 33 else "open",
                )
            )  # fmt: skip
    engine.dispose()
    first = client.get("/events").text
    rows = re.findall(r'<tr data-event="(\d+)" data-level="(\w*)">', first)
    assert len(rows) == 30  # one page; the merged event is not listed
    assert ">事件32<" in first and ">事件33<" not in first
    assert 'id="pager"' in first and "共 33 个" in first
    # By heat, hottest first: the second page holds the 3 coolest.
    second = client.get("/events", params={"page": 2}).text
    titles = re.findall(r">(事件\d\d)</a>", second)
    assert titles == ["事件02", "事件01", "事件00"]
    critical = client.get("/events", params={"level": "critical"}).text
    shown = re.findall(r'<tr data-event="\d+" data-level="(\w*)">', critical)
    assert shown and set(shown) == {"critical"} and "共 8 个" in critical
    # Active in the last 3 days (local dates), by level: 事件00..03 minus none.
    since = (now + timedelta(hours=8) - timedelta(days=3)).strftime("%Y-%m-%d")
    recent = client.get("/events", params={"since": since, "sort": "level"}).text
    assert re.findall(r">(事件\d\d)</a>", recent) == ["事件03", "事件02", "事件01", "事件00"]
    merged = client.get("/events", params={"status": "merged"}).text
    assert re.findall(r">(事件\d\d)</a>", merged) == ["事件33"]
    bad = client.get("/events", params={"since": "yesterday", "level": "huge"})
    assert bad.status_code == 200 and "YYYY-MM-DD" in bad.text and "特大" in bad.text
    api = client.get("/api/v1/events", params={"level": "major", "sort": "heat", "limit": 2})
    assert [e["title"] for e in api.json()["events"]] == ["事件30", "事件26"]
    status = client.get("/api/v1/events", params={"status": "all", "limit": 500})
    assert len(status.json()["events"]) == 34


# --- in the browser --------------------------------------------------------------------------


def test_topic_editor_shows_errors_in_place_and_the_difference(web, browser) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    fill_corpus(client, settings)
    tid = client.post("/api/v1/topics", json={"name": "医疗投诉", "query": "医院 AND 投诉"}).json()[
        "id"
    ]
    page = signed_in_page(browser, client)  # type: ignore[attr-defined]
    page.goto(f"{client.base_url}/topics?lang=zh_CN")  # Chromium asks for English otherwise
    page.wait_for_selector("tr[data-topic]")
    screenshot(page, "topics")
    page.goto(f"{client.base_url}/topics/{tid}")
    page.fill("input[name=query]", "医院 AND (投诉")
    page.click("#preview-btn")
    page.wait_for_selector("#preview-error")
    assert "character 10" in page.inner_text("#preview-error")
    # The spot is marked in the query: the end, where ")" was expected.
    assert page.is_visible("#query-error-at mark")
    assert page.inner_text("#query-error-at").startswith("医院 AND (投诉")
    page.fill("input[name=query]", "医院 AND (投诉 OR 举报)")
    page.fill("input[name=exclusions]", "广告")
    page.select_option("select[name=days]", "0")
    page.click("#preview-btn")
    page.wait_for_selector("#preview-diff")
    assert page.inner_text("#preview-count strong") == "3"
    assert page.inner_text("#diff-added h4 strong") == "1"
    assert page.inner_text("#diff-removed h4 strong") == "1"
    assert "停车难" in page.inner_text("#diff-added-samples")
    assert "小广告" in page.inner_text("#diff-removed-samples")
    assert page.locator("#preview-samples mark").count() >= 1
    page.wait_for_selector("#preview-chart svg")
    screenshot(page, "topic_editor")
    page.click("#topic-form button[type=submit]")
    page.wait_for_selector("tr[data-version='2']")
    assert "tester" in page.inner_text("tr[data-version='2']")
    assert client.get(f"/api/v1/topics/{tid}").json()["exclusions"] == ["广告"]
    page.close()


def test_event_page_draws_its_charts_and_the_override_changes_the_badge(web, browser) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    eid, _ids, _start = make_event(client, settings)
    page = signed_in_page(browser, client)  # type: ignore[attr-defined]
    page.goto(f"{client.base_url}/events?lang=zh_CN")  # Chromium asks for English otherwise
    page.wait_for_selector(f"tr[data-event='{eid}'] .level")
    screenshot(page, "events")
    page.goto(f"{client.base_url}/events/{eid}")
    page.wait_for_selector("#timeline-chart svg")
    page.wait_for_selector("#spread-chart svg")
    page.wait_for_selector("#tiers-chart svg")
    # Nine posts drawn in the tree (one symbol each), bylines as text, nothing run.
    assert page.evaluate("window.__xss") is None
    screenshot(page, "event")
    page.select_option("#override-form select[name=level]", "critical")
    page.fill("#override-form input[name=reason]", "已引发省级媒体关注")
    page.click("#override-form button[type=submit]")
    page.wait_for_selector("#level-badge[data-level='critical']")
    assert page.inner_text("#level-badge") == "特大"
    assert "已引发省级媒体关注" in page.inner_text("#override-info")
    # Without the chart library each chart's place says so instead.
    page.route("**/static/vendor/echarts.min.js", lambda route: route.abort())
    page.reload()
    page.wait_for_selector("#timeline-chart.chart-note")
    assert "make install" in page.inner_text("#timeline-chart")
    assert "make install" in page.inner_text("#spread-chart")
    page.close()
