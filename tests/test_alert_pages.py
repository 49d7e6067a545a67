"""The warnings settings pages against a real server: the rule form (create, edit, errors in
place, enable, delete), channels added through the page and "send test" to a real SMTP server
and a real webhook receiver, secrets never printed back, escalation per level, and who may
change what. Two runs in Chromium: the rule form, and adding a webhook and sending a test."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from starlette.datastructures import FormData

from tests.conftest import add_person, push_source, screenshot, sign_in, signed_in_page
from tests.loopback import LoopbackServer, Reply
from tests.test_alert_channels import Mailbox, free_port
from tingfeng.db.engine import make_engine
from tingfeng.db.models import Channel
from tingfeng.settings import Settings
from tingfeng.web.alert_forms import (
    channel_from_form,
    policy_from_form,
    rule_error_field,
    rule_from_form,
)
from tingfeng.web.alert_text import channel_view, masked_url

SMTP_PASSWORD = "smtp-Pa55-never-shown"
DING_TOKEN = "0123456789abcdef0123456789abcdef"
DING_SECRET = "SEC0123456789abcdef"
WEBHOOK_SECRET = "whsec-" + "7" * 40


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture
def settings(settings: Settings, mailbox: tuple[Mailbox, int]) -> Settings:
    """The shared settings, with e-mail through the loopback SMTP server (no login: the password
    is set only so the pages can be shown never to print it)."""
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": mailbox[1],
            "smtp_from": "tingfeng@yq.example.gov.cn",
            "smtp_password": SMTP_PASSWORD,
            "delivery_timeout_s": 5.0,
        }
    )


def form(**fields: object) -> dict[str, object]:
    """Form data as httpx sends it: lists for repeated fields."""
    return {k: v for k, v in fields.items() if v is not None}


def saved_id(response: httpx.Response, page: str) -> int:
    assert response.status_code == 303, response.text[-2000:]
    location = response.headers["location"]
    assert location.startswith(page), location
    found = re.search(r"(?:rule|channel)=(\d+)", location)
    assert found, location
    return int(found.group(1))


def field_error(html: str, name: str) -> str:
    found = re.search(rf'id="error-{re.escape(name)}"[^>]*>([^<]*)<', html)
    assert found, f"no error shown at {name}"
    return found.group(1)


@contextmanager
def other_client(client: httpx.Client, username: str) -> Iterator[httpx.Client]:
    """Another person signed in to the same server."""
    with httpx.Client(base_url=str(client.base_url), timeout=30) as other:
        sign_in(other, username)
        yield other


# --- the forms, read without a server -----------------------------------------------------------


def test_rule_form_reads_every_field_of_a_rule() -> None:
    parsed = rule_from_form(
        FormData(
            [
                ("name", " 化工安全 "),
                ("enabled", "1"),
                ("trigger", "post"),
                ("per", "post"),
                ("topic_ids", "3"),
                ("query", "爆炸 | 起火"),
                ("polarities", "negative"),
                ("emotions", "angry"),
                ("emotions", "fear"),
                ("categories", "public-safety"),
                ("regions", "杭州，330106、 宁波"),
                ("source_ids", "2"),
                ("tiers", "forum"),
                ("needs_verification", "yes"),
                ("min_level", "serious"),
                ("min_posts", "5"),
                ("new_event", "1"),
                ("user_ids", "7"),
                ("roles", "handler"),
                ("department_ids", "4"),
                ("on_duty", "1"),
                ("duty_roles", "A"),
                ("channel_ids", "9"),
                ("level", "major"),
                ("dedup_minutes", "30"),
                ("rate_limit_per_hour", "10"),
                ("digest_minutes", "15"),
                ("note", "夜间值班"),
            ]
        )
    )
    assert parsed.ok, parsed.errors
    assert parsed.values == {
        "name": "化工安全",
        "enabled": True,
        "conditions": {
            "topic_ids": [3], "source_ids": [2], "query": "爆炸 | 起火",
            "polarities": ["negative"], "emotions": ["angry", "fear"],
            "categories": ["public-safety"], "tiers": ["forum"],
            "regions": ["杭州", "330106", "宁波"], "needs_verification": True,
            "min_level": "serious", "min_posts": 5, "new_event": True,
        },
        "per": "post",
        "recipients": {"user_ids": [7], "roles": ["handler"], "department_ids": [4],
                       "on_duty": True, "duty_roles": ["A"]},
        "channel_ids": [9],
        "level": "major",
        "dedup_window_s": 1800,
        "rate_limit_per_hour": 10,
        "digest_minutes": 15,
        "escalate": False,
        "note": "夜间值班",
    }  # fmt: skip
    spike = rule_from_form(FormData([("name", "突增"), ("trigger", "spike"), ("escalate", "1")]))
    assert spike.values["conditions"] == {"spike": True} and spike.values["escalate"] is True
    assert spike.values["enabled"] is False and spike.values["dedup_window_s"] == 86400

    bad = rule_from_form(FormData([("name", " "), ("min_posts", "many"), ("dedup_minutes", "-1")]))
    assert set(bad.errors) == {"name", "min_posts", "dedup_window_s"}
    assert bad.values["dedup_window_s"] == "-1"  # kept as typed for the form

    assert rule_error_field("Condition query: unexpected end at character 8") == "query"
    assert rule_error_field("There is already a rule named '地铁'.") == "name"
    assert rule_error_field("query, polarities apply to single posts, not to spikes") == "trigger"
    assert rule_error_field("No channel with id 4: see …") == "channel_ids"
    assert rule_error_field("something else") == "form"


def test_channel_form_makes_apprise_urls_from_what_people_copy() -> None:
    def target(kind: str, **fields: str) -> tuple[str, str, dict]:
        parsed = channel_from_form(FormData([("name", "群"), ("kind", kind), *fields.items()]))
        assert parsed.ok, parsed.errors
        return parsed.values["kind"], parsed.values["target"], parsed.values["config"]

    ding = f"https://oapi.dingtalk.com/robot/send?access_token={DING_TOKEN}"
    assert target("dingtalk", token=ding, sign_secret=DING_SECRET) == (
        "apprise",
        f"dingtalk://{DING_SECRET}@{DING_TOKEN}",
        {},
    )
    assert target("dingtalk", token=DING_TOKEN, endpoint="http://10.1.2.3/send") == (
        "apprise",
        f"dingtalk://{DING_TOKEN}",
        {"endpoint": "http://10.1.2.3/send"},
    )
    wecom = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4"
    assert target("wecom", token=wecom)[1] == "wecombot://693a91f6-7xxx-4bc4"
    feishu = "https://open.feishu.cn/open-apis/bot/v2/hook/3c1f4b9e-0d5a/"
    assert target("feishu", token=feishu)[1] == "feishu://3c1f4b9e-0d5a"
    slack = "https://hooks.slack.com/services/T000/B000/XXXX"
    assert target("slack", token=slack)[1] == "slack://T000/B000/XXXX"
    assert target("telegram", token="123456789:AAbb", chat_id="-100123")[1] == (
        "tgram://123456789:AAbb/-100123"
    )
    assert target("webhook", url="https://h.example/x", secret="s" * 20) == (
        "webhook",
        "https://h.example/x",
        {"secret": "s" * 20},
    )
    assert target("email", mailbox="duty@example.gov.cn") == ("email", "duty@example.gov.cn", {})
    missing = channel_from_form(FormData([("kind", "telegram"), ("token", "1:A")]))
    assert set(missing.errors) == {"name", "chat_id"}
    assert set(channel_from_form(FormData([("name", "x"), ("kind", "pager")])).errors) == {"kind"}


def test_channels_are_shown_without_their_secrets() -> None:
    hook = {"id": 1, "name": "值班群", "kind": "webhook", "enabled": True,
            "target": "https://user:pw@hooks.example.gov.cn/tf/0123456789abcdefXYZ?key=SECRETKEY",
            "config": {"secret": "***"}}  # fmt: skip
    shown = channel_view(hook)
    assert shown["target"] == "https://hooks.example.gov.cn/tf/0123***?***" and shown["signed"]
    ding = {"id": 2, "name": "钉钉", "kind": "apprise", "enabled": True,
            "target": f"dingtalk://{DING_SECRET}@{DING_TOKEN}", "config": {}}  # fmt: skip
    assert channel_view(ding)["target"] == "dingtalk://***"
    assert channel_view(ding)["service"] == "dingtalk"
    assert masked_url("http://10.1.2.3:8080/dingtalk/robot/send") == (
        "http://10.1.2.3:8080/dingtalk/robot/send"
    )


def test_escalation_form_skips_blank_rows_and_says_what_is_missing() -> None:
    parsed = policy_from_form(
        FormData(
            [
                ("step-0-after", "15"),
                ("step-0-roles", "handler"),
                ("step-1-after", "30"),
                ("step-1-user_ids", "7"),
                ("step-1-on_duty", "1"),
                ("step-1-duty_roles", "B"),
                ("step-1-channel_ids", "2"),
                ("step-2-after", ""),
                ("repeat_minutes", "60"),
                ("max_repeats", "2"),
            ]
        )
    )
    assert parsed.ok, parsed.errors
    assert parsed.values == {
        "steps": [
            {"after_minutes": 15.0, "recipients": {"roles": ["handler"]}, "channel_ids": []},
            {"after_minutes": 30.0,
             "recipients": {"user_ids": [7], "on_duty": True, "duty_roles": ["B"]},
             "channel_ids": [2]},
        ],
        "repeat_minutes": 60,
        "max_repeats": 2,
    }  # fmt: skip
    bad = policy_from_form(
        FormData([("step-0-after", "10"), ("step-1-roles", "handler"), ("repeat_minutes", "5")])
    )
    assert set(bad.errors) == {"step-0-after", "step-1-after", "repeat_minutes"}


# --- the pages against a real server ------------------------------------------------------------


def test_rule_form_creates_edits_enables_and_deletes_with_errors_in_place(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    zhang = add_person(settings, "zhang", "analyst", department="网信科")
    topic = client.post("/api/v1/topics", json={"name": "化工厂", "query": "化工"}).json()
    channel = client.post(
        "/api/v1/channels", json={"name": "值班邮箱", "kind": "email", "target": "d@example.gov.cn"}
    ).json()
    page = client.get("/alerts/rules/new")
    assert page.status_code == 200 and 'id="rule-form"' in page.text
    assert f'value="{topic["id"]}"' in page.text and "值班邮箱" in page.text

    fields = form(
        name="化工安全", enabled="1", trigger="post", per="post", topic_ids=[str(topic["id"])],
        query="爆炸 AND (", polarities=["negative"], regions="杭州", min_level="serious",
        user_ids=[str(zhang)], roles=["handler"], on_duty="1", duty_roles=["A"],
        channel_ids=[str(channel["id"])], level="major", dedup_minutes="30",
        rate_limit_per_hour="12", digest_minutes="0", note="夜间也要通知",
    )  # fmt: skip
    refused = client.post("/alerts/rules", data=fields)
    assert refused.status_code == 422
    assert "at character" in field_error(refused.text, "query")
    assert 'value="化工安全"' in refused.text and "夜间也要通知" in refused.text  # kept as typed
    assert client.get("/api/v1/alert-rules").json()["rules"] == []

    rule_id = saved_id(client.post("/alerts/rules", data={**fields, "query": "爆炸 | 起火"}),
                       "/alerts/rules")  # fmt: skip
    rule = client.get(f"/api/v1/alert-rules/{rule_id}").json()
    assert rule["conditions"] == {
        "topic_ids": [topic["id"]], "query": "爆炸 | 起火", "polarities": ["negative"],
        "regions": ["330100"], "min_level": "serious",
    }  # fmt: skip
    assert rule["recipients"] == {"user_ids": [zhang], "roles": ["handler"], "on_duty": True,
                                  "duty_roles": ["A"]}  # fmt: skip
    assert rule["channel_ids"] == [channel["id"]] and rule["level"] == "major"
    assert (rule["per"], rule["dedup_window_s"], rule["rate_limit_per_hour"]) == ("post", 1800, 12)
    assert rule["enabled"] is True and rule["escalate"] is False and rule["note"] == "夜间也要通知"

    listing = client.get(f"/alerts/rules?notice=saved&rule={rule_id}").text
    row = listing.split(f'data-rule="{rule_id}"')[1].split("</tr>")[0]
    assert "化工安全" in row and "检索条件：爆炸 | 起火" in row and "命中方案：化工厂" in row
    assert "倾向：负面" in row and "浙江省杭州市" in row and "事件等级不低于较大" in row
    assert "zhang" in row and "经办人" in row and "值班人员（主班）" in row and "值班邮箱" in row
    assert "30 分钟内合并" in row and "不逐级上报" in row and "重大" in row
    assert 'data-confirm="确定删除规则“化工安全”' in row and 'id="notice"' in listing

    edit = client.get(f"/alerts/rules/{rule_id}")
    assert edit.status_code == 200 and 'value="杭州' not in edit.text and "330100" in edit.text
    assert f'action="/alerts/rules/{rule_id}"' in edit.text
    # Post conditions cannot go with spikes: the service says so, at the trigger.
    spike = client.post(
        f"/alerts/rules/{rule_id}", data={**fields, "query": "", "trigger": "spike"}
    )
    assert spike.status_code == 422 and "single posts" in field_error(spike.text, "trigger")
    client.post("/alerts/rules", data=form(name="地铁", trigger="post", query="地铁"))
    same = client.post(f"/alerts/rules/{rule_id}", data={**fields, "query": "爆炸", "name": "地铁"})
    assert same.status_code == 422 and "already" in field_error(same.text, "name")
    # The API too: renaming onto another rule's name was a 500 from the unique index.
    same = client.patch(f"/api/v1/alert-rules/{rule_id}", json={"name": "地铁"})
    assert same.status_code == 422 and "already a rule named '地铁'" in same.json()["error"]
    changed = client.post(
        f"/alerts/rules/{rule_id}",
        data=form(name="化工安全", trigger="level_rises", min_level="major", roles=["approver"],
                  level="serious", escalate="1", enabled="1"),
    )  # fmt: skip
    assert saved_id(changed, "/alerts/rules") == rule_id
    rule = client.get(f"/api/v1/alert-rules/{rule_id}").json()
    assert rule["conditions"] == {"level_rises": True, "min_level": "major"}
    assert rule["recipients"] == {"roles": ["approver"]} and rule["channel_ids"] == []

    r = client.post(f"/alerts/rules/{rule_id}/enabled", data={"enabled": "0"})
    assert r.status_code == 303 and client.get(f"/api/v1/alert-rules/{rule_id}").json()[
        "enabled"] is False  # fmt: skip
    row = client.get("/alerts/rules").text.split(f'data-rule="{rule_id}"')[1].split("</tr>")[0]
    assert 'data-enabled="false"' in row and "已停用" in row
    assert client.post(f"/alerts/rules/{rule_id}/delete").status_code == 303
    assert client.get(f"/api/v1/alert-rules/{rule_id}").status_code == 404
    assert client.post(f"/alerts/rules/{rule_id}/delete").status_code == 404
    assert client.get("/alerts/rules/999").status_code == 404

    # The English page renders (its words come from the catalogue: tests/test_i18n.py).
    english = client.get("/alerts/rules?lang=en")
    assert english.status_code == 200 and '<html lang="en">' in english.text
    client.cookies.delete("tf_lang")


def test_a_viewer_reads_but_cannot_change_and_only_the_admin_manages_channels(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    add_person(settings, "kan", "viewer")
    add_person(settings, "zhang", "analyst")
    rule = client.post("/api/v1/alert-rules", json={"name": "地铁", "conditions": {}}).json()
    channel = client.post(
        "/api/v1/channels", json={"name": "值班邮箱", "kind": "email", "target": "d@example.gov.cn"}
    ).json()
    with other_client(client, "kan") as viewer:
        page = viewer.get("/alerts/rules")
        assert page.status_code == 200 and "地铁" in page.text
        assert 'id="new-rule"' not in page.text and "/delete" not in page.text
        assert "<fieldset disabled" in viewer.get(f"/alerts/rules/{rule['id']}").text
        refused = [
            viewer.post("/alerts/rules", data={"name": "x"}),
            viewer.post(f"/alerts/rules/{rule['id']}", data={"name": "x"}),
            viewer.post(f"/alerts/rules/{rule['id']}/enabled", data={"enabled": "0"}),
            viewer.post(f"/alerts/rules/{rule['id']}/delete"),
            viewer.post("/api/v1/alert-rules", json={"name": "x"}),
            viewer.patch(f"/api/v1/alert-rules/{rule['id']}", json={"enabled": False}),
            viewer.delete(f"/api/v1/alert-rules/{rule['id']}"),
            viewer.post("/alerts/channels", data={"name": "x", "kind": "email"}),
            viewer.post(f"/api/v1/channels/{channel['id']}/test"),
            viewer.post("/alerts/escalation/major", data={}),
        ]
        assert [r.status_code for r in refused] == [403] * len(refused)
        channels = viewer.get("/alerts/channels").text
        assert "值班邮箱" in channels and 'class="send-test"' not in channels
        assert 'id="channel-form"' not in channels and 'class="policy-form"' not in channels
        assert 'id="failed"' not in viewer.get("/alerts").text  # failed deliveries: the office's
    assert client.get(f"/api/v1/alert-rules/{rule['id']}").json()["enabled"] is True

    with other_client(client, "zhang") as analyst:
        made = analyst.post("/alerts/rules", data=form(name="分析员的规则", trigger="post"))
        assert made.status_code == 303
        page = analyst.get("/alerts/channels").text
        assert 'class="send-test"' in page and 'id="channel-form"' not in page
        assert (
            analyst.post("/alerts/channels", data={"name": "x", "kind": "email"}).status_code == 403
        )
        assert analyst.post(f"/alerts/channels/{channel['id']}/delete").status_code == 403


def test_send_test_on_an_email_channel_reaches_the_smtp_server(web, mailbox) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    box, _port = mailbox
    channel_id = saved_id(
        client.post("/alerts/channels", data=form(name="值班邮箱", kind="email",
                                                   mailbox="值班室 <duty@example.gov.cn>")),
        "/alerts/channels",
    )  # fmt: skip
    r = client.post(f"/api/v1/channels/{channel_id}/test")
    assert r.status_code == 200 and r.json() == {"ok": True}
    (envelope,) = box.envelopes
    assert (
        envelope[1] == ["duty@example.gov.cn"]
        and "听风渠道测试：值班邮箱" in envelope[2]["Subject"]
    )

    personal = saved_id(client.post("/alerts/channels", data=form(name="个人邮箱", kind="email")),
                        "/alerts/channels")  # fmt: skip
    r = client.post(f"/api/v1/channels/{personal}/test", json={"address": "li@example.gov.cn"})
    assert r.status_code == 200 and box.envelopes[-1][1] == ["li@example.gov.cn"]
    r = client.post(f"/api/v1/channels/{personal}/test")
    assert r.status_code == 502 and "no address to send to" in r.json()["error"]

    page = client.get("/alerts/channels").text
    row = page.split(f'data-channel="{personal}"')[1].split("</tr>")[0]
    assert 'class="test-address"' in row and "每位接收人自己的邮箱" in row
    assert f"127.0.0.1:{settings.smtp_port}" in page and "tingfeng@yq.example.gov.cn" in page
    assert (
        SMTP_PASSWORD not in page
        and SMTP_PASSWORD not in client.get("/alerts/channels?lang=en").text
    )
    client.cookies.delete("tf_lang")


def test_webhook_and_robot_channels_from_the_page_are_masked_tested_and_removed(
    web, loopback: LoopbackServer
) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    loopback.route("/hook", Reply(200, b"ok"))
    url = loopback.url("/hook") + "?token=TOPSECRETTOKEN123"
    hook = saved_id(
        client.post("/alerts/channels",
                    data=form(name="值班群", kind="webhook", url=url, secret=WEBHOOK_SECRET)),
        "/alerts/channels",
    )  # fmt: skip
    ding = saved_id(
        client.post("/alerts/channels", data=form(
            name="钉钉群", kind="dingtalk", sign_secret=DING_SECRET,
            token=f"https://oapi.dingtalk.com/robot/send?access_token={DING_TOKEN}")),
        "/alerts/channels",
    )  # fmt: skip
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        stored = dict(conn.execute(select(Channel.id, Channel.target)).all())
    engine.dispose()
    assert stored[hook] == url and stored[ding] == f"dingtalk://{DING_SECRET}@{DING_TOKEN}"

    page = client.get(f"/alerts/channels?notice=added&channel={hook}")
    for secret in (WEBHOOK_SECRET, "TOPSECRETTOKEN123", DING_TOKEN, DING_SECRET):
        assert secret not in page.text, secret
    row = page.text.split(f'data-channel="{hook}"')[1].split("</tr>")[0]
    assert f"127.0.0.1:{loopback.port}/hook?***" in row and "签名密钥：已设置" in row
    assert "dingtalk://***" in page.text and "钉钉群机器人" in page.text
    assert 'id="notice"' in page.text

    # "Send test" is the page's call to the API: the receiver gets a signed test message.
    assert client.post(f"/api/v1/channels/{hook}/test").json() == {"ok": True}
    (got,) = loopback.requests
    assert json.loads(got.body)["data"]["purpose"] == "test"
    assert got.query == "token=TOPSECRETTOKEN123"
    assert got.headers["x-tingfeng-signature"].startswith("sha256=")
    # A receiver that is not there (a closed port): the error says so.
    closed = client.post(
        "/api/v1/channels",
        json={"name": "坏掉的", "kind": "webhook", "target": f"http://127.0.0.1:{free_port()}/x"},
    ).json()
    r = client.post(f"/api/v1/channels/{closed['id']}/test")
    assert r.status_code == 502 and "could not reach webhook" in r.json()["error"]

    # A refusal keeps what was typed, except the secret, and says why.
    refused = client.post("/alerts/channels", data=form(
        name="内网", kind="webhook", url="http://10.20.30.40/hook", secret=WEBHOOK_SECRET))  # fmt: skip
    assert refused.status_code == 422 and "refused to send to" in refused.text
    assert 'value="内网"' in refused.text and WEBHOOK_SECRET not in refused.text
    short = client.post(
        "/alerts/channels", data=form(name="短", kind="webhook", url=url, secret="x")
    )
    assert short.status_code == 422 and "at least 16 characters" in short.text

    assert client.post(f"/alerts/channels/{ding}/delete").status_code == 303
    assert [c["id"] for c in client.get("/api/v1/channels").json()["channels"]] == [
        hook, closed["id"]]  # fmt: skip
    assert client.post(f"/alerts/channels/{ding}/delete").status_code == 404


def test_escalation_is_shown_per_level_and_edited_by_the_admin(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    li = add_person(settings, "li", "handler")
    add_person(settings, "zhang", "analyst")
    page = client.get("/alerts/channels").text
    assert page.count("不逐级上报。") == 4 and 'action="/alerts/escalation/major"' in page

    steps = form(**{
        "step-0-after": "15", "step-0-roles": ["handler"],
        "step-1-after": "30", "step-1-user_ids": [str(li)], "step-1-on_duty": "1",
        "repeat_minutes": "60", "max_repeats": "2",
    })  # fmt: skip
    r = client.post("/alerts/escalation/major", data=steps)
    assert r.status_code == 303 and r.headers["location"].endswith("#escalation-major")
    (policy,) = client.get("/api/v1/escalation").json()["policies"]
    assert policy["level"] == "major" and [s["after_minutes"] for s in policy["steps"]] == [15, 30]
    assert policy["steps"][1]["recipients"] == {"user_ids": [li], "roles": [], "department_ids": [],
                                                "on_duty": True, "duty_roles": []}  # fmt: skip
    section = client.get("/alerts/channels").text.split('id="escalation-major"')[1]
    section = section.split('class="policy"')[0]
    assert "15 分钟后通知 经办人" in section and "30 分钟后通知 li、值班人员" in section
    assert "每 60 分钟再通知一次，至多 2 次" in section

    nobody = client.post("/alerts/escalation/major", data={"step-0-after": "10"})
    assert nobody.status_code == 422 and "没有通知任何人" in field_error(
        nobody.text, "step-0-after"
    )
    assert len(client.get("/api/v1/escalation").json()["policies"][0]["steps"]) == 2
    assert client.post("/alerts/escalation/huge", data={}).status_code == 404
    with other_client(client, "zhang") as analyst:
        assert analyst.post("/alerts/escalation/major", data=steps).status_code == 403
        assert 'class="policy-form"' not in analyst.get("/alerts/channels").text
    # Every step left blank: no escalation for the level.
    assert client.post("/alerts/escalation/major", data={}).status_code == 303
    assert client.get("/alerts/channels").text.count("不逐级上报。") == 4


# --- in Chromium --------------------------------------------------------------------------------


def test_alerts_list_and_rule_form_in_the_browser(web, browser) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    sid, token = push_source(settings)
    client.post("/api/v1/alert-rules", json={"name": "爆炸", "conditions": {"query": "爆炸"},
                                             "per": "post"})  # fmt: skip
    r = client.post(f"/api/v1/sources/{sid}/posts", headers={"Authorization": f"Bearer {token}"},
                    json=[{"id": "1", "text": "化工厂仓库发生爆炸，现场浓烟滚滚"}])  # fmt: skip
    assert r.json()["stored"] == 1
    page = signed_in_page(browser, client)  # type: ignore[attr-defined]
    # Chinese, whatever the browser's language (the ?lang= choice sticks in a cookie).
    page.goto(str(client.base_url) + "/alerts?lang=zh_CN")
    page.wait_for_selector("tr[data-alert]")
    assert "化工厂仓库发生爆炸" in page.inner_text("#alerts")
    screenshot(page, "alerts")

    page.click("#rules-link")
    page.wait_for_selector("#rules")
    page.click("#new-rule")
    page.fill("#name", "医院投诉")
    page.fill("#query", "医院 AND (")
    page.check("input[name=polarities][value=negative]")
    page.check("input[name=roles][value=handler]")
    page.click("#save-rule")
    error = page.wait_for_selector("#error-query")
    assert "character" in error.inner_text()
    assert page.input_value("#name") == "医院投诉"  # what was typed stays
    assert page.is_checked("input[name=polarities][value=negative]")
    page.fill("#query", "医院 AND 投诉")
    page.click("#save-rule")
    page.wait_for_selector("#notice")
    row = page.locator("tr.highlight")
    assert "医院投诉" in row.inner_text() and "检索条件：医院 AND 投诉" in row.inner_text()
    screenshot(page, "alert_rules")
    rule = next(r for r in client.get("/api/v1/alert-rules").json()["rules"]
                if r["name"] == "医院投诉")  # fmt: skip
    assert rule["conditions"]["polarities"] == ["negative"]
    assert rule["recipients"] == {"roles": ["handler"]}

    page.on("dialog", lambda dialog: dialog.accept())  # the data-confirm question
    row.locator("form.delete button").click()
    page.wait_for_selector("text=规则已删除")
    assert "医院投诉" not in page.inner_text("#rules")
    page.close()


def test_add_a_webhook_and_send_a_test_in_the_browser(web, browser, loopback) -> None:  # type: ignore[no-untyped-def]
    client, _settings = web
    loopback.route("/hook", Reply(200, b"ok"))
    closed = client.post(
        "/api/v1/channels",
        json={"name": "坏掉的", "kind": "webhook", "target": f"http://127.0.0.1:{free_port()}/x"},
    ).json()
    page = signed_in_page(browser, client)  # type: ignore[attr-defined]
    page.goto(str(client.base_url) + "/alerts/channels?lang=zh_CN")
    page.select_option("#ch-kind", "dingtalk")
    assert page.is_visible("#ch-sign") and not page.is_visible("#ch-url")
    page.select_option("#ch-kind", "webhook")
    page.fill("#ch-name", "值班群")
    page.fill("#ch-url", loopback.url("/hook"))
    page.click("#make-secret")
    assert len(page.input_value("#ch-secret")) == 64
    page.click("#add-channel-button")
    page.wait_for_selector("#notice")
    row = page.locator("tr.highlight")
    assert "值班群" in row.inner_text()
    row.locator("button.send-test").click()
    page.wait_for_selector("tr.highlight .test-result.ok")
    assert "已送达" in row.locator(".test-result").inner_text()
    (got,) = loopback.requests
    assert json.loads(got.body)["subject"].startswith("【测试消息·一般】听风渠道测试：值班群")

    broken = page.locator(f'tr[data-channel="{closed["id"]}"]')
    broken.locator("button.send-test").click()
    page.wait_for_selector(f'tr[data-channel="{closed["id"]}"] .test-result.error')
    text = broken.locator(".test-result").inner_text()
    assert "连接不上接收方" in text and "could not reach webhook" in text
    screenshot(page, "channels")
    page.close()
