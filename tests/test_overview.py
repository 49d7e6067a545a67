"""态势总览: the summary's numbers on chosen data, the API, and the page in a real Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import insert

from tests.conftest import push_source, signed_in_page
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import (
    Alert,
    Case,
    CaseDeadline,
    Event,
    Post,
    PostLabel,
    PostReading,
    Source,
)
from tingfeng.office.people import Person, add_department, add_user
from tingfeng.web.overview import summary

TZ = "Asia/Shanghai"
# 2024-03-05 10:30 in Shanghai.
NOW = datetime(2024, 3, 5, 2, 30, tzinfo=UTC)
XSS = "<img src=x onerror=window.__xss=1>"


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A Shanghai wall-clock time in March 2024, as UTC."""
    return datetime(2024, 3, day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


class Filler:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.n = 0

    def source(self, name: str) -> int:
        return self.conn.execute(
            insert(Source).values(name=name, kind="push", config={})
        ).inserted_primary_key[0]

    def post(
        self,
        source_id: int,
        published: datetime | None,
        *,
        fetched: datetime | None = None,
        polarity: str | None = None,
        emotion: str = "neutral",
        regions: tuple[str, ...] = (),
    ) -> int:
        self.n += 1
        pid = self.conn.execute(
            insert(Post).values(
                uid=f"u{self.n}",
                source_id=source_id,
                content_hash=f"h{self.n}",
                text_clean=f"post {self.n}",
                published_at=published,
                fetched_at=fetched or published or NOW,
            )
        ).inserted_primary_key[0]
        if polarity:
            self.conn.execute(
                insert(PostReading).values(
                    post_id=pid, version="t", polarity=polarity, emotion=emotion
                )
            )
        for code in regions:
            self.conn.execute(insert(PostLabel).values(kind="region", value=code, post_id=pid))
        return pid

    def event(self, title: str, *, heat: float, level: str, seen: datetime, status="open") -> int:
        return self.conn.execute(
            insert(Event).values(
                title=title, heat=heat, level=level, last_seen_at=seen, status=status, posts=3
            )
        ).inserted_primary_key[0]

    def alert(self, title: str, created: datetime, status: str = "open") -> int:
        self.n += 1
        return self.conn.execute(
            insert(Alert).values(
                dedup_key=f"k{self.n}",
                subject=f"post:{self.n}",
                title=title,
                level="serious",
                status=status,
                created_at=created,
                window_until=created + timedelta(hours=1),
            )
        ).inserted_primary_key[0]

    def case(self, number: str, department_id: int, state: str, due: list[tuple]) -> int:
        cid = self.conn.execute(
            insert(Case).values(
                number=number,
                title=f"处理单 {number}",
                origin="manual",
                state=state,
                level="major",
                department_id=department_id,
            )
        ).inserted_primary_key[0]
        for step, at, status in due:
            self.conn.execute(
                insert(CaseDeadline).values(case_id=cid, step=step, due_at=at, status=status)
            )
        return cid


@pytest.fixture
def filled(db_url: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A database with posts, readings, events, alerts and cases at chosen times."""
    engine = make_engine(db_url)
    upgrade(engine)
    ids: dict[str, Any] = {}
    with write_transaction(engine) as conn:
        f = Filler(conn)
        a, b = f.source("甲平台"), f.source("乙平台")
        xihu = ("330000", "330100", "330106")
        # Today (local): 00:10, 08:00 (no published_at), 09:15, 10:05 twice; 11:00 is the future.
        f.post(a, local(5, 0, 10), polarity="positive", emotion="happy")
        f.post(b, None, fetched=local(5, 8))
        f.post(a, local(5, 9, 15), polarity="negative", emotion="sad", regions=xihu)
        f.post(a, local(5, 10, 5), polarity="negative", emotion="angry", regions=xihu)
        f.post(b, local(5, 10, 5), polarity="neutral", regions=("110000", "110101"))
        f.post(a, local(5, 11, 0), polarity="negative")
        # Yesterday: 00:00 and 09:00 count (before 10:30); 11:00 does not; 03-03 23:59 is older.
        f.post(a, local(4, 0, 0), polarity="negative")
        f.post(a, local(4, 9, 0))
        f.post(b, local(4, 11, 0), polarity="negative")
        f.post(b, local(3, 23, 59))
        ids["hot"] = f.event("热度最高", heat=80, level="general", seen=NOW - timedelta(hours=2))
        ids["xss"] = f.event(XSS, heat=50, level="major", seen=NOW - timedelta(hours=1))
        f.event("已合并", heat=99, level="critical", seen=NOW, status="merged")
        f.event("过时", heat=99, level="critical", seen=NOW - timedelta(hours=30))
        ids["old_alert"] = f.alert("较早预警", NOW - timedelta(hours=3))
        ids["new_alert"] = f.alert("最新预警", NOW - timedelta(minutes=5))
        f.alert("已确认", NOW - timedelta(minutes=1), status="acknowledged")
        cg = add_department(conn, "城管局")
        wj = add_department(conn, "卫健局")
        ids["cg_case"] = f.case(
            "2024-0001",
            cg,
            "assigned",
            [
                ("reply", NOW + timedelta(hours=1), "open"),
                ("accept", NOW - timedelta(hours=5), "met"),
            ],
        )
        ids["wj_case"] = f.case(
            "2024-0002", wj, "verifying", [("report", NOW - timedelta(minutes=10), "open")]
        )
        f.case("2024-0003", cg, "closed", [("reply", NOW - timedelta(hours=9), "open")])
        ids["no_deadline"] = f.case("2024-0004", cg, "new", [])
        ids["admin"] = add_user(conn, "boss", role="admin")
        ids["handler"] = add_user(conn, "cg1", role="handler", department="城管局")
    try:
        yield engine, ids
    finally:
        engine.dispose()


def test_summary_counts_days_hours_mixes_and_lists(filled) -> None:  # type: ignore[no-untyped-def]
    engine, ids = filled
    admin: Person = ids["admin"]
    with engine.connect() as conn:
        s = summary(conn, admin, NOW, TZ)

    assert s["day"] == "2024-03-05"
    # Today: five up to 10:30 (one only has fetched_at); yesterday: two up to 10:30 that day.
    assert s["volume"] == {"today": 5, "yesterday_same_time": 2, "change": 3, "change_pct": 150.0}

    hourly = s["hourly"]
    assert len(hourly["total"]) == 24 and hourly["labels"][0] == "11时"
    assert hourly["labels"][-1] == "10时"
    expected = [0] * 24
    for index, n in {0: 1, 13: 1, 21: 1, 22: 1, 23: 2}.items():
        expected[index] = n
    assert hourly["total"] == expected
    # Negative: 09:15 and 10:05 today, and yesterday 11:00 (inside the last 24 hours).
    assert [i for i, n in enumerate(hourly["negative"]) if n] == [0, 22, 23]
    assert sum(hourly["negative"]) == 3

    assert {p["label"]: p["count"] for p in s["polarity"]} == {
        "negative": 2,
        "neutral": 1,
        "positive": 1,
    }
    assert s["polarity"][0]["label_zh"] == "负面"
    emotions = {e["label"]: e["count"] for e in s["emotion"]}
    assert emotions == {"sad": 1, "angry": 1, "neutral": 1, "happy": 1}

    assert [(x["name"], x["count"]) for x in s["sources"]] == [("甲平台", 3), ("乙平台", 2)]
    regions = {r["name"]: r["count"] for r in s["regions"]}
    assert regions["西湖区"] == 2 and regions["浙江省"] == 2 and regions["杭州市"] == 2
    assert regions["北京市"] == 1
    assert next(r for r in s["regions"] if r["code"] == "330106")["path"] == "浙江省杭州市西湖区"

    assert [e["id"] for e in s["events"]] == [ids["hot"], ids["xss"]]
    assert s["events"][1]["level"] == "major" and s["events"][1]["level_zh"] == "重大"
    assert s["alerts"]["count"] == 2
    assert [a["id"] for a in s["alerts"]["newest"]] == [ids["new_alert"], ids["old_alert"]]

    cases = s["cases"]
    assert cases["count"] == 3  # the closed one is not in hand
    assert [c["id"] for c in cases["next"]] == [ids["wj_case"], ids["cg_case"], ids["no_deadline"]]
    overdue, soon, none = cases["next"]
    assert overdue["seconds_left"] == -600 and overdue["step"] == "report"
    assert soon["seconds_left"] == 3600 and soon["step"] == "reply"  # the met one is past
    assert none["due_at"] is None and none["seconds_left"] is None


def test_summary_cases_follow_the_persons_scope(filled) -> None:  # type: ignore[no-untyped-def]
    engine, ids = filled
    with engine.connect() as conn:
        s = summary(conn, ids["handler"], NOW, TZ)
    numbers = [c["number"] for c in s["cases"]["next"]]
    assert "2024-0002" not in numbers  # 卫健局's case: not this 城管局 handler's
    assert numbers == ["2024-0001", "2024-0004"] and s["cases"]["count"] == 2


def test_summary_change_is_none_without_yesterday(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    with write_transaction(engine) as conn:
        f = Filler(conn)
        f.post(f.source("甲"), NOW - timedelta(minutes=1))
        person = add_user(conn, "a1", role="analyst")
    with engine.connect() as conn:
        s = summary(conn, person, NOW, TZ)
    engine.dispose()
    assert s["volume"] == {"today": 1, "yesterday_same_time": 0, "change": 1, "change_pct": None}
    assert s["hourly"]["total"][23] == 1 and s["events"] == [] and s["cases"]["next"] == []


# --- over HTTP and in the browser ------------------------------------------------------------


def test_api_needs_sign_in_and_answers_the_admin(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    sid, token = push_source(settings)
    r = client.post(
        f"/api/v1/sources/{sid}/posts",
        headers={"Authorization": f"Bearer {token}"},
        json=[{"id": "1", "text": "县医院门诊楼漏雨"}],
    )
    assert r.json()["stored"] == 1
    data = client.get("/api/v1/overview").json()
    assert data["volume"]["today"] == 1
    assert data["sources"] == [{"id": sid, "name": "对接平台", "count": 1}]
    assert data["hourly"]["total"][23] == 1
    signed_out = httpx.get(str(client.base_url) + "/api/v1/overview")
    assert signed_out.status_code == 401
    page = httpx.get(str(client.base_url) + "/overview", follow_redirects=False)
    assert page.status_code == 303 and "/login" in page.headers["location"]


def test_page_updates_live_shows_wall_mode_and_keeps_titles_inert(web, browser) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    sid, token = push_source(settings)
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        Filler(conn).event(XSS, heat=12, level="major", seen=datetime.now(UTC))
        Filler(conn).alert(XSS, datetime.now(UTC))
    engine.dispose()

    page = signed_in_page(browser, client)  # type: ignore[attr-defined]
    page.goto(str(client.base_url) + "/overview?refresh=2")
    assert page.inner_text("#ov-today") == "0"
    assert page.locator("header a[href='/cases']").count() == 1
    assert XSS in page.inner_text("#ov-events")
    assert XSS in page.inner_text("#ov-alerts")
    r = client.post(
        f"/api/v1/sources/{sid}/posts",
        headers={"Authorization": f"Bearer {token}"},
        json=[{"id": "1", "text": "镇政府回应垃圾清运问题"}, {"id": "2", "text": "县医院漏雨"}],
    )
    assert r.json()["stored"] == 2
    expect(page.locator("#ov-today")).to_have_text("2", timeout=15000)
    assert "对接平台" in page.inner_text("#ov-sources")
    # The hourly chart is ECharts (from npm): the last hour's bar holds the two posts.
    last_hour = page.evaluate(
        "echarts.getInstanceByDom(document.getElementById('ov-hourly')).getOption()"
        ".series.map((s) => s.data[23])"
    )
    negative = client.get("/api/v1/overview").json()["hourly"]["negative"][23]
    assert last_hour == [2, negative]
    assert page.locator("#ov-hourly svg path").count() > 0
    assert page.evaluate("window.__xss") is None
    assert page.locator("#ov-events img, #ov-alerts img").count() == 0

    page.goto(str(client.base_url) + "/overview?wall=1")
    assert page.locator("header").count() == 0
    assert page.locator("a[href='/cases']").count() == 0
    assert page.inner_text("#ov-today") == "2"
    assert page.evaluate("document.body.classList.contains('wall')")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(11, 21, 38)"
    assert XSS in page.inner_text("#ov-events")
    assert page.evaluate("window.__xss") is None
    page.close()
