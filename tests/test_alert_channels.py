"""Alert channels against real servers on loopback: an SMTP server (aiosmtpd), webhook receivers,
and DingTalk / WeCom / Feishu / Telegram through apprise with their endpoint moved to loopback."""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import json
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from urllib.parse import parse_qs

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import _free_port as free_port
from tests.loopback import LoopbackServer, Reply
from tingfeng.alerts.channels import (
    KINDS,
    ChannelError,
    ChannelSpec,
    check_channel,
    personal,
    send,
)
from tingfeng.alerts.messages import Message, render
from tingfeng.db.models import Channel
from tingfeng.settings import Settings

ACK = "https://yq.example.gov.cn/ack/7f3a9c?sig=abc123"
URL = "https://yq.example.gov.cn/alerts/42"
DING_TOKEN = "0123456789abcdef0123456789abcdef"
DING_SECRET = "SEC0123456789abcdef"
WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
FEISHU_TOKEN = "3c1f4b9e-0d5a-4e2f-9b7c-8a6d2e1f0c3b"


def alert(key: str = "alert:42:user:7", title: str = "某市化工厂爆炸致多人受伤") -> Message:
    return render(
        key=key,
        purpose="alert",
        level="major",
        title=title,
        excerpt="网传视频显示厂区浓烟滚滚，周边居民已疏散。",
        url=URL,
        ack_url=ACK,
        lines=["规则：安全生产 · 命中 12 条"],
    )


def channel(kind: str, target: str = "", **config: object) -> ChannelSpec:
    return ChannelSpec(id=1, name=f"test {kind}", kind=kind, target=target, config=dict(config))


def no_loopback(settings: Settings) -> Settings:
    return settings.model_copy(update={"fetch_allowed_networks": []})


# --- e-mail -----------------------------------------------------------------------------------


class Mailbox:
    """aiosmtpd handler: keeps what arrives; `data_replies` answers DATA (then 250 OK)."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], EmailMessage]] = []
        self.data_replies: list[str] = []
        self.refuse_rcpt: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_replies:
            return self.data_replies.pop(0)
        parsed = email.message_from_bytes(envelope.content, policy=policy.default)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 OK"


@pytest.fixture
def smtp(settings: Settings) -> Iterator[tuple[Mailbox, Settings]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield (
            box,
            settings.model_copy(
                update={
                    "smtp_host": "127.0.0.1",
                    "smtp_port": port,
                    "smtp_from": "tingfeng@yq.example.gov.cn",
                    "delivery_timeout_s": 5.0,
                }
            ),
        )
    finally:
        controller.stop()


def test_email_arrives_in_chinese_with_links_and_a_stable_message_id(smtp) -> None:
    box, settings = smtp
    message = alert(title="某市化工厂爆炸<b>网传</b>")
    send(channel("email"), message, settings, address="zhangsan@example.gov.cn")
    send(channel("email"), message, settings, address="zhangsan@example.gov.cn")
    send(
        channel("email"), alert(key="alert:43:user:7"), settings, address="zhangsan@example.gov.cn"
    )

    assert len(box.envelopes) == 3
    sender, rcpts, mail = box.envelopes[0]
    assert sender == "tingfeng@yq.example.gov.cn"
    assert rcpts == ["zhangsan@example.gov.cn"]
    assert mail["Subject"] == message.subject  # decodes back to the Chinese subject
    assert "化工厂" in mail["Subject"]
    assert mail["X-Tingfeng-Delivery"] == message.key
    text = mail.get_body(("plain",)).get_content()
    assert "周边居民已疏散" in text and ACK in text
    page = mail.get_body(("html",)).get_content()
    assert "&lt;b&gt;网传&lt;/b&gt;" in page and "<b>网传" not in page  # collected text escaped
    assert f'<a href="{ACK.replace("&", "&amp;")}">' in page
    # The same delivery keeps its Message-ID across attempts; another delivery gets its own.
    ids = [m["Message-ID"] for _, _, m in box.envelopes]
    assert ids[0] == ids[1] != ids[2]
    assert ids[0].endswith("@yq.example.gov.cn>")


def test_email_group_mailbox_gets_the_message_instead_of_the_person(smtp) -> None:
    box, settings = smtp
    target, config = check_channel(
        "email", "值班室 <duty@yq.example.gov.cn>; leader@yq.example.gov.cn", {}, settings
    )
    assert config == {}
    assert "duty@yq.example.gov.cn" in target and "leader@yq.example.gov.cn" in target
    spec = channel("email", target)
    assert not spec.is_personal and channel("email").is_personal
    send(spec, alert(), settings, address="someone@example.gov.cn")
    (_, rcpts, mail), *_ = box.envelopes
    assert rcpts == ["duty@yq.example.gov.cn", "leader@yq.example.gov.cn"]
    assert "值班室" in str(mail["To"])


def test_email_try_later_is_temporary_then_it_goes_through(smtp) -> None:
    box, settings = smtp
    box.data_replies = ["451 4.3.0 try later"]
    with pytest.raises(ChannelError) as failed:
        send(channel("email"), alert(), settings, address="zhangsan@example.gov.cn")
    assert not failed.value.permanent
    assert "451" in failed.value.message and "try later" in failed.value.message
    assert box.envelopes == []
    send(channel("email"), alert(), settings, address="zhangsan@example.gov.cn")
    assert len(box.envelopes) == 1


def test_email_refused_recipient_is_permanent(smtp) -> None:
    box, settings = smtp
    box.refuse_rcpt = "550 5.1.1 no such user"
    with pytest.raises(ChannelError) as failed:
        send(channel("email"), alert(), settings, address="nobody@example.gov.cn")
    assert failed.value.permanent
    assert "nobody@example.gov.cn" in failed.value.message and "550" in failed.value.message


def test_email_without_server_or_unreachable(settings: Settings) -> None:
    with pytest.raises(ChannelError) as failed:
        send(channel("email"), alert(), settings, address="a@example.gov.cn")
    assert failed.value.permanent and "TINGFENG_SMTP_HOST" in failed.value.message
    with pytest.raises(ChannelError) as failed:
        check_channel("email", "", {}, settings)
    assert "TINGFENG_SMTP_HOST" in failed.value.message
    nobody = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": free_port()})
    with pytest.raises(ChannelError) as failed:
        send(channel("email"), alert(), nobody, address="a@example.gov.cn")
    assert not failed.value.permanent  # connection refused: the server may come back


# --- webhook ----------------------------------------------------------------------------------


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check, exactly as docs/alerts-channels.md shows it."""
    timestamp = headers["x-tingfeng-timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest("sha256=" + expected, headers.get("x-tingfeng-signature", ""))


SECRET = "s3cr3t-0123456789abcdef"


def test_webhook_posts_the_documented_json_signed(settings: Settings, loopback) -> None:
    loopback.route("/hook", Reply(204))
    message = alert()
    send(channel("webhook", loopback.url("/hook"), secret=SECRET), message, settings)
    (req,) = loopback.requests
    assert req.method == "POST"
    assert req.headers["content-type"].startswith("application/json")
    assert req.headers["idempotency-key"] == message.key
    payload = json.loads(req.body)
    assert payload == {
        "version": 1,
        "key": message.key,
        "subject": message.subject,
        "text": message.text,
        "markdown": message.markdown,
        "level": "major",
        "url": URL,
        "ack_url": ACK,
        "data": message.data,
    }
    assert payload["data"]["purpose"] == "alert" and "化工厂" in payload["subject"]
    assert "化工厂".encode() in req.body  # UTF-8 as is, not \u escapes
    assert verify(SECRET, req.headers, req.body)
    assert not verify("another-secret-0123456789", req.headers, req.body)
    assert not verify(SECRET, req.headers, req.body.replace(b"major", b"minor"))


def test_webhook_without_secret_is_unsigned(settings: Settings, loopback) -> None:
    loopback.route("/hook", Reply(200, b"ok"))
    send(channel("webhook", loopback.url("/hook")), alert(), settings)
    (req,) = loopback.requests
    assert "x-tingfeng-signature" not in req.headers
    assert req.headers["x-tingfeng-timestamp"].isdigit()


def test_webhook_500_is_temporary_then_200_succeeds(settings: Settings, loopback) -> None:
    replies = [Reply(500, b"database is locked", content_type="text/plain"), Reply(200)]
    loopback.route("/hook", lambda req: replies.pop(0))
    spec = channel("webhook", loopback.url("/hook"), secret=SECRET)
    with pytest.raises(ChannelError) as failed:
        send(spec, alert(), settings)
    assert not failed.value.permanent
    assert "500" in failed.value.message and "database is locked" in failed.value.message
    send(spec, alert(), settings)
    assert loopback.hits("/hook") == 2
    first, second = loopback.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


@pytest.mark.parametrize("status, permanent", [(404, True), (403, True), (429, False)])
def test_webhook_4xx_is_permanent_but_429(settings: Settings, loopback, status, permanent) -> None:
    loopback.route("/hook", Reply(status, b"nope", content_type="text/plain"))
    with pytest.raises(ChannelError) as failed:
        send(channel("webhook", loopback.url("/hook")), alert(), settings)
    assert failed.value.permanent is permanent
    assert str(status) in failed.value.message


def test_webhook_redirects_same_origin_307_only(settings: Settings, loopback) -> None:
    loopback.route("/old", Reply(307, headers={"Location": "/new"}))
    loopback.route("/new", Reply(200))
    send(channel("webhook", loopback.url("/old"), secret=SECRET), alert(), settings)
    moved = loopback.requests[-1]
    assert moved.path == "/new" and moved.method == "POST"
    assert verify(SECRET, moved.headers, moved.body)

    with LoopbackServer() as elsewhere:
        elsewhere.route("/x", Reply(200))
        loopback.route("/away", Reply(308, headers={"Location": elsewhere.url("/x")}))
        with pytest.raises(ChannelError) as failed:
            send(channel("webhook", loopback.url("/away")), alert(), settings)
        assert failed.value.permanent and elsewhere.requests == []


def test_webhook_to_loopback_is_refused_unless_allowed(settings: Settings, loopback) -> None:
    loopback.route("/hook", Reply(200))
    with pytest.raises(ChannelError) as failed:
        send(channel("webhook", loopback.url("/hook")), alert(), no_loopback(settings))
    assert failed.value.permanent
    assert "loopback" in failed.value.message
    assert "fetch_allowed_networks" in failed.value.message
    assert loopback.requests == []


def test_webhook_unreachable_is_temporary(settings: Settings) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(ChannelError) as failed:
        send(channel("webhook", url), alert(), settings)
    assert not failed.value.permanent


# --- apprise: DingTalk, WeCom, Feishu, Telegram through an endpoint on loopback ----------------


def json_reply(status: int = 200, body: dict | None = None) -> Reply:
    return Reply(
        status,
        json.dumps(body or {"errcode": 0, "errmsg": "ok"}).encode(),
        content_type="application/json",
    )


def test_dingtalk_markdown_through_endpoint(settings: Settings, loopback) -> None:
    loopback.route("/ding/robot/send", json_reply())
    message = alert()
    spec = channel("apprise", f"dingtalk://{DING_TOKEN}", endpoint=loopback.url("/ding/robot/send"))
    send(spec, message, settings)
    (req,) = loopback.requests
    assert parse_qs(req.query)["access_token"] == [DING_TOKEN]
    payload = json.loads(req.body)
    assert payload["msgtype"] == "markdown"
    assert payload["markdown"]["title"] == message.subject
    text = payload["markdown"]["text"]
    assert message.subject in text and ACK in text and "周边居民已疏散" in text
    assert text.count("化工厂爆炸") == 1  # the subject is the heading, not repeated below it


def test_dingtalk_collected_text_cannot_form_links(settings: Settings, loopback) -> None:
    loopback.route("/ding", json_reply())
    message = alert(title="点击[领取补贴](http://evil.example/x) @所有人")
    send(
        channel("apprise", f"dingtalk://{DING_TOKEN}", endpoint=loopback.url("/ding")),
        message,
        settings,
    )
    markdown = json.loads(loopback.requests[0].body)["markdown"]
    assert "[领取补贴](http://evil.example/x)" not in markdown["text"]
    assert "\\[领取补贴\\]" in markdown["text"]
    assert markdown["text"].count("领取补贴") == 1


def test_dingtalk_signed_with_secret(settings: Settings, loopback) -> None:
    loopback.route("/ding", json_reply())
    spec = channel(
        "apprise", f"dingtalk://{DING_SECRET}@{DING_TOKEN}", endpoint=loopback.url("/ding")
    )
    send(spec, alert(), settings)
    (req,) = loopback.requests
    assert "%25" not in req.query  # the signature is URL-quoted once, as DingTalk expects
    query = parse_qs(req.query)
    assert query["access_token"] == [DING_TOKEN]
    timestamp, sign = query["timestamp"][0], query["sign"][0]
    # DingTalk's check: base64(HMAC-SHA256(secret, "timestamp\nsecret")).
    digest = hmac.new(
        DING_SECRET.encode(), f"{timestamp}\n{DING_SECRET}".encode(), hashlib.sha256
    ).digest()
    assert sign == base64.b64encode(digest).decode()


@pytest.mark.parametrize("status, permanent", [(502, False), (404, True)])
def test_dingtalk_error_status_is_a_channel_error(
    settings: Settings, loopback, status, permanent
) -> None:
    loopback.route("/ding", json_reply(status, {"errcode": 310000, "errmsg": "bad"}))
    spec = channel("apprise", f"dingtalk://{DING_TOKEN}", endpoint=loopback.url("/ding"))
    with pytest.raises(ChannelError) as failed:
        send(spec, alert(), settings)
    assert failed.value.permanent is permanent
    assert str(status) in failed.value.message
    assert DING_TOKEN not in failed.value.message


@pytest.mark.parametrize(
    "scheme, answer, status, permanent",
    [
        # Status 200, but the robot dropped the message: apprise alone counted these as sent.
        (
            "dingtalk",
            {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"},
            200,
            False,
        ),
        ("dingtalk", {"errcode": 310000, "errmsg": "keywords not in content"}, 200, True),
        ("wecombot", {"errcode": 45009, "errmsg": "api freq out of limit"}, 200, False),
        ("wecombot", {"errcode": 93000, "errmsg": "invalid webhook url"}, 200, True),
        ("feishu", {"code": 19021, "msg": "sign match fail"}, 200, True),
        ("feishu", {"StatusCode": 11232, "StatusMessage": "frequency limited"}, 200, False),
        # Feishu's "too many requests" comes with a 400, which alone reads as permanent.
        ("feishu", {"code": 9499, "msg": "too many request"}, 400, False),
    ],
)
def test_robot_error_codes_inside_the_answer_are_channel_errors(
    settings: Settings, loopback, scheme: str, answer: dict, status: int, permanent: bool
) -> None:
    token = {"dingtalk": DING_TOKEN, "wecombot": WECOM_KEY, "feishu": FEISHU_TOKEN}[scheme]
    # Feishu posts to ENDPOINT/TOKEN/, the others to the endpoint with the token in the query.
    loopback.route(
        f"/robot/{token}/" if scheme == "feishu" else "/robot", json_reply(status, answer)
    )
    spec = channel("apprise", f"{scheme}://{token}", endpoint=loopback.url("/robot"))
    with pytest.raises(ChannelError) as failed:
        send(spec, alert(), settings)
    assert len(loopback.requests) == 1
    assert failed.value.permanent is permanent
    code, said = next(iter(answer.values())), list(answer.values())[1]
    assert f"{code} {said}" in failed.value.message
    assert ("will try again" in failed.value.message) is not permanent
    assert token not in failed.value.message


def test_robot_answers_of_success_are_sent(settings: Settings, loopback) -> None:
    for scheme, token, answer in (
        ("dingtalk", DING_TOKEN, {"errcode": 0, "errmsg": "ok"}),
        ("feishu", FEISHU_TOKEN, {"StatusCode": 0, "StatusMessage": "success"}),
        ("feishu", FEISHU_TOKEN, {"code": 0, "msg": "success", "data": {}}),
    ):
        loopback.route(
            f"/robot/{token}/" if scheme == "feishu" else "/robot", json_reply(200, answer)
        )
        send(
            channel("apprise", f"{scheme}://{token}", endpoint=loopback.url("/robot")),
            alert(),
            settings,
        )
    assert len(loopback.requests) == 3


def test_wecom_bot_through_endpoint(settings: Settings, loopback) -> None:
    loopback.route("/wecom/send", json_reply())
    message = alert()
    spec = channel("apprise", f"wecombot://{WECOM_KEY}", endpoint=loopback.url("/wecom/send"))
    send(spec, message, settings)
    (req,) = loopback.requests
    assert parse_qs(req.query)["key"] == [WECOM_KEY]
    payload = json.loads(req.body)
    # apprise's WeCom bot sends text messages: {"msgtype": "text", "text": {"content": ...}}.
    assert payload["msgtype"] == "text"
    content = payload["text"]["content"]
    assert content.startswith(message.subject) and ACK in content
    assert content.count(message.subject) == 1 and "**" not in content


def test_wecom_bot_error_is_a_channel_error(settings: Settings, loopback) -> None:
    loopback.route("/wecom", Reply(503, b"busy", content_type="text/plain"))
    spec = channel("apprise", f"wecombot://{WECOM_KEY}", endpoint=loopback.url("/wecom"))
    with pytest.raises(ChannelError) as failed:
        send(spec, alert(), settings)
    assert not failed.value.permanent and "503" in failed.value.message


def test_feishu_through_endpoint(settings: Settings, loopback) -> None:
    route = f"/feishu/hook/{FEISHU_TOKEN}/"
    loopback.route(route, json_reply(200, {"code": 0, "msg": "success"}))
    message = alert()
    spec = channel("apprise", f"feishu://{FEISHU_TOKEN}", endpoint=loopback.url("/feishu/hook"))
    send(spec, message, settings)
    (req,) = loopback.requests
    assert req.path == route
    payload = json.loads(req.body)
    # apprise's Feishu bot: {"msg_type": "text", "content": {"text": ...}}.
    assert payload["msg_type"] == "text"
    assert message.subject in payload["content"]["text"] and ACK in payload["content"]["text"]

    loopback.route(route, Reply(400, b'{"code": 19001, "msg": "param invalid"}'))
    with pytest.raises(ChannelError) as failed:
        send(spec, message, settings)
    assert failed.value.permanent and "400" in failed.value.message


def test_telegram_through_endpoint(settings: Settings, loopback) -> None:
    bot = "123456789:AAFabcdefghijklmnopqrstuvwxyz012345"
    loopback.route(f"/tg/bot{bot}/sendMessage", json_reply(200, {"ok": True, "result": {}}))
    spec = channel("apprise", f"tgram://{bot}/-100123456/", endpoint=loopback.url("/tg"))
    send(spec, alert(), settings)
    (req,) = loopback.requests
    payload = json.loads(req.body)
    assert str(payload["chat_id"]) == "-100123456"
    assert "化工厂爆炸" in payload["text"] and "yq.example.gov.cn/ack" in payload["text"]


def test_apprise_endpoint_unreachable_is_temporary(settings: Settings) -> None:
    spec = channel(
        "apprise", f"dingtalk://{DING_TOKEN}", endpoint=f"http://127.0.0.1:{free_port()}/d"
    )
    with pytest.raises(ChannelError) as failed:
        send(spec, alert(), settings)
    assert not failed.value.permanent


# --- check_channel ------------------------------------------------------------------------------


def problem(kind: str, target: str, config: dict, settings: Settings) -> str:
    with pytest.raises(ChannelError) as failed:
        check_channel(kind, target, config, settings)
    assert isinstance(failed.value, ValueError)  # shown like other input problems
    return failed.value.message


def test_check_apprise_urls(settings: Settings, loopback) -> None:
    assert check_channel("apprise", f" dingtalk://{DING_TOKEN} ", {}, settings) == (
        f"dingtalk://{DING_TOKEN}",
        {},
    )
    endpoint = loopback.url("/relay")
    assert check_channel("apprise", f"wecombot://{WECOM_KEY}", {"endpoint": endpoint}, settings)[
        1
    ] == {"endpoint": endpoint}
    assert "appriseit.com" in problem("apprise", "nosuchservice://abc", {}, settings)
    assert "appriseit.com" in problem("apprise", "just words", {}, settings)
    bad_token = problem("apprise", "dingtalk://abc$def123", {}, settings)
    assert "appriseit.com" in bad_token and "abc$def123" not in bad_token  # token masked
    assert "webhook" in problem("apprise", "json://example.com/hook", {}, settings)


def test_check_apprise_endpoint_rules(settings: Settings) -> None:
    unsupported = problem(
        "apprise",
        "pover://uQiRzpo4DXghDmr9QzzfQu27cmVRsG@azGDORePK8gMaC0QOYAMyEEuzJnyUi",
        {"endpoint": "https://relay.example.com"},
        settings,
    )
    assert "not supported" in unsupported and "dingtalk" in unsupported
    blocked = problem(
        "apprise",
        f"dingtalk://{DING_TOKEN}",
        {"endpoint": "http://10.1.2.3/robot/send"},
        no_loopback(settings),
    )
    assert "private" in blocked and "fetch_allowed_networks" in blocked


def test_check_webhook(settings: Settings, loopback) -> None:
    assert check_channel("webhook", loopback.url("/h"), {"secret": SECRET}, settings) == (
        loopback.url("/h"),
        {"secret": SECRET},
    )
    private = problem("webhook", "http://192.168.1.20/hook", {}, no_loopback(settings))
    assert "private address" in private and "fetch_allowed_networks" in private
    assert "http and https" in problem("webhook", "ftp://example.com/x", {}, settings)
    assert "16 characters" in problem("webhook", loopback.url("/h"), {"secret": "short"}, settings)
    assert "scret" in problem("webhook", loopback.url("/h"), {"scret": SECRET}, settings)


def test_check_email_and_kinds(settings: Settings) -> None:
    mail = settings.model_copy(update={"smtp_host": "mail.example.gov.cn"})
    assert check_channel("email", "", {}, mail) == ("", {})
    assert "e-mail address" in problem("email", "duty at example", {}, mail)
    assert "unknown channel kind" in problem("sms", "x", {}, mail)
    assert KINDS == ("email", "webhook", "apprise")
    row = Channel(id=3, name="值班群", kind="apprise", target=f"wecombot://{WECOM_KEY}")
    spec = ChannelSpec.of(row)
    assert (spec.id, spec.name, spec.kind, spec.config) == (3, "值班群", "apprise", {})
    assert not spec.is_personal
    assert personal("email") and not personal("webhook") and not personal("apprise")
