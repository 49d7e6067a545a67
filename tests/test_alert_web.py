"""The alerts API and pages against the real server: alerts raised by real ingestion, the
acknowledge link, the inbox, rules, channels (a real webhook receiver), escalation and retrying
failed deliveries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine

from tests.conftest import TEST_PASSWORD, sign_in
from tests.loopback import LoopbackServer, Reply
from tingfeng.alerts.dispatch import Dispatcher
from tingfeng.collect.items import RawItem
from tingfeng.collect.sources import add_source
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.ingest.ingestor import Ingestor, SourceRef
from tingfeng.office.people import add_department, add_user, set_password
from tingfeng.settings import Settings

FIRE = "浙江杭州萧山区一化工厂发生爆炸起火，现场浓烟滚滚，已造成2人死亡、5人受伤，消防正在灭火。"
SUBWAY = "杭州地铁2号线早高峰发生故障停运半小时，大量乘客滞留站台，地铁公司致歉。"
UNRELATED = "今天天气不错，去西湖边散步，心情很好。"
# Entities survive cleaning as the characters they stand for: the title has real markup.
HOSTILE = "仓库爆炸 &lt;script&gt;window.__xss=1&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"


@dataclass
class Site:
    client: httpx.Client
    settings: Settings
    engine: Engine
    source: SourceRef
    users: dict[str, int]

    def ingest(self, *texts: str, url: str = "https://weibo.example/{n}") -> None:
        now = datetime.now(UTC)
        items = [
            RawItem(
                text=text,
                external_id=f"{now.timestamp()}-{n}",
                platform="weibo",
                url=url.format(n=n),
                published_at=now - timedelta(minutes=1),
            )
            for n, text in enumerate(texts)
        ]
        Ingestor(self.engine, self.settings).ingest(self.source, items)

    def rule(self, **values: object) -> dict:
        r = self.client.post("/api/v1/alert-rules", json=values)
        assert r.status_code == 201, r.text
        return r.json()

    def alerts(self, **params: object) -> list[dict]:
        r = self.client.get("/api/v1/alerts", params=params)
        assert r.status_code == 200, r.text
        return r.json()["alerts"]


@pytest.fixture
def site(web) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    client, settings = web
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        source = add_source(conn, name="weibo", kind="push", config={}, timezone="Asia/Shanghai")
        add_department(conn, "网信科")
        users = {
            "zhang": add_user(conn, "zhang", "张三", role="analyst", department="网信科").id,
            "li": add_user(conn, "li", "李四", role="handler", department="网信科").id,
        }
        for user_id in users.values():
            set_password(conn, user_id, TEST_PASSWORD)
    yield Site(client, settings, engine, SourceRef(source.id, "Asia/Shanghai"), users)
    engine.dispose()


def fire_alert(site: Site) -> dict:
    site.rule(
        name="爆炸",
        conditions={"query": "爆炸 | 起火"},
        per="post",
        recipients={"user_ids": [site.users["zhang"]], "roles": ["handler"]},
    )
    site.ingest(FIRE, UNRELATED, SUBWAY)
    (alert,) = site.alerts()
    return alert


def test_list_detail_and_acknowledge_through_the_api(site: Site) -> None:
    client = site.client
    alert = fire_alert(site)
    assert alert["title"].startswith("浙江杭州萧山区") and alert["status"] == "open"
    body = client.get("/api/v1/alerts").json()
    assert body["counts"]["open"] == 1 and body["latest_id"] == alert["id"]
    assert site.alerts(after_id=alert["id"]) == []
    assert site.alerts(status="acknowledged") == []
    assert client.get("/api/v1/alerts", params={"status": "closed"}).status_code == 422

    detail = client.get(f"/api/v1/alerts/{alert['id']}").json()
    assert detail["reason"]["rule"] == "爆炸"
    assert detail["reason"]["matched"]["query"] == "爆炸 | 起火"
    assert [e["what"] for e in detail["log"]] == ["raised"]
    assert sorted(d["user"] for d in detail["deliveries"]) == ["张三", "李四"]
    missing = client.get("/api/v1/alerts/9999")
    assert missing.status_code == 404 and "9999" in missing.json()["error"]

    # The signed-in person acknowledges; a name in the request cannot speak for someone else.
    with httpx.Client(base_url=str(client.base_url), timeout=30) as zhang:
        sign_in(zhang, "zhang")
        r = zhang.post(f"/api/v1/alerts/{alert['id']}/ack", json={"by": "李四"})
    assert r.status_code == 200
    first = r.json()
    assert first["acknowledged"] and not first["already"] and first["by"] == "张三"
    again = client.post(f"/api/v1/alerts/{alert['id']}/ack", json={}).json()
    assert again["already"] and again["by"] == "张三" and again["at"] == first["at"]
    assert client.post("/api/v1/alerts/9999/ack", json={}).status_code == 404

    body = client.get("/api/v1/alerts").json()
    assert body["counts"]["open"] == 0
    assert [a["id"] for a in site.alerts(status="acknowledged")] == [alert["id"]]
    detail = client.get(f"/api/v1/alerts/{alert['id']}").json()
    assert detail["acked_by"] == "张三" and detail["acked_via"] == "api"
    assert [e["what"] for e in detail["log"]] == ["raised", "acknowledged"]


def test_pages_show_the_alert_and_why_it_fired_with_collected_text_escaped(site: Site) -> None:
    client = site.client
    site.rule(
        name="仓库",
        conditions={"query": "爆炸"},
        per="post",
        recipients={"user_ids": [site.users["zhang"]]},
    )
    site.ingest(HOSTILE, url="javascript:alert(1)//{n}")
    (alert,) = site.alerts()
    page = client.get("/alerts")
    assert page.status_code == 200
    assert alert["title"].startswith("仓库爆炸 <script>")
    assert "仓库爆炸 &lt;script&gt;window.__xss=1&lt;/script&gt;&lt;img" in page.text
    assert "<script>window.__xss" not in page.text and "<img src=x" not in page.text
    assert f'href="/alerts/{alert["id"]}"' in page.text and 'id="open-count">1<' in page.text
    assert client.get("/alerts?status=all").status_code == 200
    assert client.get("/alerts?status=bogus").status_code == 422

    page = client.get(f"/alerts/{alert['id']}")
    assert page.status_code == 200
    assert "<dt>规则</dt><dd>仓库" in page.text and "<dt>检索条件</dt><dd>爆炸</dd>" in page.text
    assert "javascript:" not in page.text.split("原文地址")[0]  # never as a link
    assert alert["url"] is None or "原文地址（非网页链接）" in page.text
    assert 'id="post-link"' not in page.text and "触发预警" in page.text
    assert "<script>window.__xss" not in page.text
    assert client.get("/alerts/9999").status_code == 404

    # A post with a real address links to it; an event alert links to its event.
    topic = client.post("/api/v1/topics", json={"name": "地铁运营", "query": "地铁"}).json()
    site.rule(name="地铁事件", conditions={"topic_ids": [topic["id"]]})
    site.ingest(SUBWAY)
    subway = site.alerts(limit=1)[0]
    assert subway["event_id"] is not None
    page = client.get(f"/alerts/{subway['id']}").text
    assert 'id="post-link" href="https://weibo.example/0"' in page
    assert f'id="event-link" href="/events/{subway["event_id"]}"' in page
    assert subway["post_id"] and f'id="post-detail" href="/posts/{subway["post_id"]}"' in page
    assert f"<dt>命中方案</dt><dd>地铁运营（{topic['id']}）</dd>" in page


def test_the_acknowledge_link_shows_a_form_and_only_the_post_acknowledges(site: Site) -> None:
    client = site.client
    alert = fire_alert(site)
    box = client.get("/api/v1/inbox", params={"user_id": site.users["zhang"]}).json()
    (msg,) = box["messages"]
    assert msg["alert_id"] == alert["id"] and box["unread"] == 1
    token = msg["ack_url"].rsplit("/", 1)[1]

    page = client.get(f"/alerts/ack/{token}")
    assert page.status_code == 200
    assert 'id="ack-form"' in page.text and 'method="post"' in page.text
    assert 'value="张三"' in page.text
    assert "浙江杭州萧山区" in page.text
    assert client.get(f"/api/v1/alerts/{alert['id']}").json()["status"] == "open"

    done = client.post(f"/alerts/ack/{token}", data={"by": "张三"})
    assert done.status_code == 200 and "已确认" in done.text and 'id="ack-form"' not in done.text
    detail = client.get(f"/api/v1/alerts/{alert['id']}").json()
    assert detail["status"] == "acknowledged" and detail["acked_via"] == "link"
    assert detail["log"][-1]["detail"]["user_id"] == site.users["zhang"]

    again = client.post(f"/alerts/ack/{token}", data={"by": "李四"})
    assert again.status_code == 200 and "已由 张三 于" in again.text
    assert client.get(f"/alerts/ack/{token}").text.count("已由 张三 于") == 1

    tampered = client.get(f"/alerts/ack/{token[:-3]}abc")
    assert tampered.status_code == 400 and "确认链接无效" in tampered.text
    assert client.post(f"/alerts/ack/{token[:-3]}abc", data={"by": "x"}).status_code == 400
    cut = client.get(f"/alerts/ack/{token.split('.')[0]}")
    assert cut.status_code == 400 and "不完整" in cut.text


def test_a_group_link_needs_a_name(site: Site) -> None:
    from tingfeng.alerts.ack import ack_token
    from tingfeng.secret import secret_key

    alert = fire_alert(site)
    token = ack_token(secret_key(site.settings), alert["id"])  # a group chat's link: nobody
    page = site.client.get(f"/alerts/ack/{token}")
    assert page.status_code == 200 and 'value=""' in page.text
    r = site.client.post(f"/alerts/ack/{token}", data={"by": "  "})
    assert r.status_code == 422 and "请填写确认人姓名" in r.text
    assert site.client.get(f"/api/v1/alerts/{alert['id']}").json()["status"] == "open"
    r = site.client.post(f"/alerts/ack/{token}", data={"by": "值班员小王"})
    assert "确认人：值班员小王" in r.text


def test_inbox_unread_count_goes_down_when_read(site: Site) -> None:
    client = site.client
    fire_alert(site)
    site.ingest(FIRE + "最新消息")
    zhang = site.users["zhang"]
    box = client.get("/api/v1/inbox", params={"user_id": zhang}).json()
    assert box["unread"] == 2 and len(box["messages"]) == 2
    newest, oldest = box["messages"]
    r = client.post("/api/v1/inbox/read", json={"user_id": zhang, "ids": [oldest["id"]]})
    assert r.json() == {"marked": 1, "unread": 1}
    unread = client.get("/api/v1/inbox", params={"user_id": zhang, "unread_only": True}).json()
    assert [m["id"] for m in unread["messages"]] == [newest["id"]]
    r = client.post("/api/v1/inbox/read", json={"user_id": zhang, "ids": None})
    assert r.json() == {"marked": 1, "unread": 0}
    # Li's messages are Li's own.
    assert client.get("/api/v1/inbox", params={"user_id": site.users["li"]}).json()["unread"] == 2
    assert client.get("/api/v1/inbox", params={"user_id": 999}).status_code == 404


def test_rule_crud_with_errors_in_the_words_of_the_checks(site: Site) -> None:
    client = site.client
    rule = site.rule(
        name="地铁",
        conditions={"query": "地铁 AND 停运"},
        per="post",
        recipients={"roles": ["handler"]},
        level="serious",
    )
    assert rule["conditions"] == {"query": "地铁 AND 停运"} and rule["level"] == "serious"
    assert [r["name"] for r in client.get("/api/v1/alert-rules").json()["rules"]] == ["地铁"]

    bad = client.post(
        "/api/v1/alert-rules", json={"name": "x", "conditions": {"query": "爆炸 AND ("}}
    )
    assert bad.status_code == 422 and "at character 8" in bad.json()["error"]
    bad = client.post(
        "/api/v1/alert-rules", json={"name": "x", "conditions": {"polarities": ["angry"]}}
    )
    assert bad.status_code == 422 and "unknown polarity 'angry'" in bad.json()["error"]
    dup = client.post("/api/v1/alert-rules", json={"name": "地铁"})
    assert dup.status_code == 422 and "already" in dup.json()["error"]

    r = client.patch(f"/api/v1/alert-rules/{rule['id']}", json={"enabled": False, "level": "major"})
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["level"] == "major"
    r = client.patch(f"/api/v1/alert-rules/{rule['id']}", json={"conditions": {"query": "("}})
    assert r.status_code == 422 and "character" in r.json()["error"]
    r = client.patch(f"/api/v1/alert-rules/{rule['id']}", json={"colour": "red"})
    assert r.status_code == 422 and "colour" in r.json()["error"]
    assert client.get(f"/api/v1/alert-rules/{rule['id']}").json()["conditions"] == {
        "query": "地铁 AND 停运"
    }
    # A disabled rule raises nothing.
    site.ingest(SUBWAY)
    assert site.alerts() == []

    assert client.delete(f"/api/v1/alert-rules/{rule['id']}").json() == {"deleted": rule["id"]}
    assert client.get(f"/api/v1/alert-rules/{rule['id']}").status_code == 404
    assert client.delete(f"/api/v1/alert-rules/{rule['id']}").status_code == 404
    assert client.patch("/api/v1/alert-rules/999", json={"enabled": True}).status_code == 404


def test_channels_send_a_test_message_to_a_real_webhook(
    site: Site, loopback: LoopbackServer
) -> None:
    client = site.client
    loopback.route("/hook", Reply(200, b"ok"))
    loopback.route("/broken", Reply(500, b"database is down"))
    secret = "s" * 32
    r = client.post(
        "/api/v1/channels",
        json={
            "name": "值班群",
            "kind": "webhook",
            "target": loopback.url("/hook"),
            "config": {"secret": secret},
        },
    )
    assert r.status_code == 201, r.text
    channel = r.json()
    assert channel["config"] == {"secret": "***"}
    assert [c["name"] for c in client.get("/api/v1/channels").json()["channels"]] == ["值班群"]

    assert client.post(f"/api/v1/channels/{channel['id']}/test").json() == {"ok": True}
    (got,) = loopback.requests
    payload = json.loads(got.body)
    assert payload["subject"].startswith("【测试消息·一般】听风渠道测试：值班群")
    assert payload["data"]["purpose"] == "test"
    assert got.headers["x-tingfeng-signature"].startswith("sha256=")

    for target, words in [
        ("http://10.20.30.40/hook", "refused to send to"),
        ("ftp://127.0.0.1/hook", "ftp"),
    ]:
        bad = client.post(
            "/api/v1/channels", json={"name": "坏", "kind": "webhook", "target": target}
        )
        assert bad.status_code == 422 and words in bad.json()["error"], bad.text
    bad = client.post("/api/v1/channels", json={"name": "坏", "kind": "pager", "target": "x"})
    assert bad.status_code == 422 and "unknown channel kind" in bad.json()["error"]

    down = client.post(
        "/api/v1/channels",
        json={"name": "坏掉的", "kind": "webhook", "target": loopback.url("/broken")},
    ).json()
    r = client.post(f"/api/v1/channels/{down['id']}/test")
    assert r.status_code == 502 and "answered 500" in r.json()["error"]
    assert loopback.hits("/broken") == 1

    assert client.delete(f"/api/v1/channels/{down['id']}").json() == {"deleted": down["id"]}
    assert client.delete(f"/api/v1/channels/{down['id']}").status_code == 404
    assert client.post(f"/api/v1/channels/{down['id']}/test").status_code == 404


def test_escalation_policies_put_and_get(site: Site) -> None:
    client = site.client
    assert client.get("/api/v1/escalation").json() == {"policies": []}
    steps = [
        {"after_minutes": 15, "recipients": {"roles": ["handler"]}},
        {"after_minutes": 30, "recipients": {"user_ids": [site.users["zhang"]]}},
    ]
    r = client.put(
        "/api/v1/escalation/major", json={"steps": steps, "repeat_minutes": 60, "max_repeats": 2}
    )
    assert r.status_code == 200 and r.json()["level"] == "major"
    client.put("/api/v1/escalation/general", json={"steps": steps[:1]})
    policies = client.get("/api/v1/escalation").json()["policies"]
    assert [p["level"] for p in policies] == ["general", "major"]
    assert policies[1]["repeat_minutes"] == 60 and policies[1]["max_repeats"] == 2
    assert [s["after_minutes"] for s in policies[1]["steps"]] == [15, 30]
    assert policies[1]["steps"][0]["recipients"]["roles"] == ["handler"]

    bad = client.put(
        "/api/v1/escalation/major",
        json={"steps": [{"after_minutes": 0, "recipients": {"roles": ["handler"]}}]},
    )
    assert bad.status_code == 422 and "Step 1" in bad.json()["error"]
    bad = client.put("/api/v1/escalation/huge", json={"steps": steps})
    assert bad.status_code == 422 and "Unknown level 'huge'" in bad.json()["error"]
    bad = client.put(
        "/api/v1/escalation/major", json={"steps": [{"after_minutes": 5, "recipients": {}}]}
    )
    assert bad.status_code == 422 and "tells nobody" in bad.json()["error"]
    # The failed changes left the saved policy as it was.
    assert len(client.get("/api/v1/escalation").json()["policies"][1]["steps"]) == 2


def test_failed_deliveries_are_listed_and_sent_again_on_retry(
    site: Site, loopback: LoopbackServer
) -> None:
    client = site.client
    answers = [Reply(400, b"unknown robot"), Reply(200, b"ok")]
    loopback.route("/robot", lambda _req: answers[0])
    channel = client.post(
        "/api/v1/channels",
        json={"name": "机器人", "kind": "webhook", "target": loopback.url("/robot")},
    ).json()
    site.rule(name="地铁", conditions={"query": "地铁"}, per="post", channel_ids=[channel["id"]])
    site.ingest(SUBWAY)
    dispatcher = Dispatcher(site.engine, site.settings, threads=1)
    try:
        assert dispatcher.run_once() == 1  # 400: permanent, given up at once
        failed = client.get("/api/v1/deliveries/failed").json()
        (delivery,) = failed["deliveries"]
        assert failed["counts"]["failed_deliveries"] == 1
        assert delivery["channel"] == "机器人" and "answered 400" in delivery["last_error"]
        page = client.get("/alerts").text
        assert f'data-delivery="{delivery["id"]}"' in page and ">重试</button>" in page

        answers.pop(0)  # the receiver is fixed
        assert client.post("/api/v1/deliveries/retry", json={"ids": [delivery["id"]]}).json() == {
            "retried": 1
        }
        assert client.get("/api/v1/deliveries/failed").json()["deliveries"] == []
        assert dispatcher.run_once() == 1
    finally:
        dispatcher.stop()
    assert loopback.hits("/robot") == 2
    (alert,) = site.alerts()
    detail = client.get(f"/api/v1/alerts/{alert['id']}").json()
    assert [(d["channel"], d["status"]) for d in detail["deliveries"]] == [("机器人", "sent")]
    assert client.post("/api/v1/deliveries/retry", json={"ids": None}).json() == {"retried": 0}
