"""`tingfeng alerts …` end to end: rules, channels, escalation and the alert list on a SQLite
database (the CLI's --db), with alerts raised by the real ingest pipeline and a real webhook
receiver on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer.testing
from sqlalchemy import select
from typer.testing import CliRunner, Result

from tests.loopback import LoopbackServer, Reply
from tingfeng.alerts.channels import sign
from tingfeng.alerts.dispatch import Dispatcher
from tingfeng.cli.main import app
from tingfeng.collect.items import RawItem
from tingfeng.collect.sources import add_source
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import Delivery
from tingfeng.ingest.ingestor import Ingestor, SourceRef
from tingfeng.office.people import add_department, add_user
from tingfeng.settings import Settings
from tingfeng.topics.store import create_topic

# In the past, so that `alerts tick` (which runs at the real time) finds escalations due.
T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
FIRE = "浙江杭州萧山区一化工厂发生爆炸起火，现场浓烟滚滚，已造成2人死亡、5人受伤，消防正在灭火。"
SUBWAY = "杭州地铁2号线早高峰发生故障停运半小时，大量乘客滞留站台，地铁公司致歉。"
UNRELATED = "今天天气不错，去西湖边散步，心情很好。"
SECRET = "s3cret-for-the-webhook-0123456789"


@dataclass
class Office:
    url: str
    settings: Settings
    source: SourceRef
    users: dict[str, int]
    cli: Callable[..., Result]

    def ingest(self, *texts: str) -> int:
        """Store posts through the ingest pipeline at T0; returns the alerts raised."""
        items = [
            RawItem(
                text=text,
                external_id=hashlib.sha1(text.encode()).hexdigest()[:16],
                platform="weibo",
                url=f"https://weibo.example/{n}",
                published_at=T0 + timedelta(minutes=n),
            )
            for n, text in enumerate(texts)
        ]
        engine = make_engine(self.url)
        try:
            return Ingestor(engine, self.settings, now=lambda: T0).ingest(self.source, items).alerts
        finally:
            engine.dispose()

    def json(self, *args: str) -> object:
        return json.loads(self.cli(*args, "--json").stdout)

    def refused(self, *args: str, code: int = 2, **env: str) -> str:
        result = self.cli(*args, check=False, **env)
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        return result.stderr


@pytest.fixture(scope="module")
def template(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, int, dict[str, int]]]:
    """A migrated database with a source, the office and a topic, made once and copied."""
    path = tmp_path_factory.mktemp("template") / "alerts.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with write_transaction(engine) as conn:
        source = add_source(conn, name="weibo", kind="push", config={}, timezone="Asia/Shanghai")
        add_department(conn, "宣传部")
        add_department(conn, "网信科", parent="宣传部")
        users = {
            "zhang": add_user(conn, "zhang", "张三", role="analyst", department="网信科").id,
            "li": add_user(conn, "li", "李四", role="handler", department="网信科").id,
            "wang": add_user(conn, "wang", "王主任", role="approver", department="宣传部").id,
        }
        create_topic(conn, name="化工厂", query="化工厂 (爆炸 | 起火)")
    engine.dispose()
    # Typer rebuilds the whole command tree on every invoke (a few tenths of a second); the
    # tree never changes, so build it once for the module.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(typer.testing, "_get_command", functools.cache(typer.testing._get_command))
        yield path, source.id, users


@pytest.fixture
def office(tmp_path: Path, template: tuple[Path, int, dict[str, int]]) -> Office:
    path, source_id, users = template
    shutil.copy(path, tmp_path / "alerts.db")
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    settings = Settings(
        database_url=url,
        data_dir=tmp_path / "var",
        public_url="https://yq.example.cn",
        fetch_allowed_networks=["127.0.0.0/8"],
    )
    runner = CliRunner()
    env = {
        "TINGFENG_CONFIG": "/nonexistent.toml",
        "TINGFENG_DATA_DIR": str(tmp_path / "var"),
        "TINGFENG_PUBLIC_URL": "https://yq.example.cn",
        # Webhooks go to the receiver on 127.0.0.1, which is refused unless allowed.
        "TINGFENG_FETCH_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
    }

    def cli(*args: str, check: bool = True, **extra: str) -> Result:
        result = runner.invoke(app, ["--db", url, *args], env=env | extra)
        if check and result.exit_code != 0:
            raise AssertionError(
                f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
                f"\nexception: {result.exception!r}"
            )
        return result

    return Office(url, settings, SourceRef(source_id, "Asia/Shanghai"), users, cli)


def test_rule_add_resolves_names_and_the_rule_can_be_listed_switched_and_removed(
    office: Office,
) -> None:
    cli = office.cli
    cli("alerts", "channel-add", "值班群", "--kind", "webhook", "--target",
        "http://127.0.0.1:9/hook")  # fmt: skip
    added = cli(
        "alerts", "rule-add", "萧山安全",
        "--topic", "化工厂", "--query", "爆炸 | 起火", "--polarity", "负面",
        "--category", "公共安全与事故灾害", "--region", "杭州", "--source", "weibo",
        "--tier", "中央媒体", "--verified-only", "--min-level", "较大", "--min-posts", "2",
        "--to", "zhang", "--role", "科室负责人", "--department", "宣传部", "--on-duty",
        "--duty-role", "主班", "--channel", "值班群", "--level", "重大", "--per", "post",
        "--dedup-minutes", "60", "--rate-limit", "5", "--digest-minutes", "10", "--no-escalate",
        "--note", "萧山专项",
    ).stdout  # fmt: skip
    assert "预警规则 1 已添加：萧山安全" in added
    assert "命中方案 化工厂" in added and "地域 浙江省杭州市" in added
    assert "张三、领导、宣传部（含下级）、值班人员（主班）" in added
    (rule,) = office.json("alerts", "rules")
    assert rule["conditions"] == {
        "topic_ids": [1],
        "query": "爆炸 | 起火",
        "polarities": ["negative"],
        "categories": ["public-safety"],
        "regions": ["330100"],
        "source_ids": [office.source.id],
        "tiers": ["central_media"],
        "needs_verification": False,
        "min_level": "serious",
        "min_posts": 2,
    }
    assert rule["recipients"] == {
        "user_ids": [office.users["zhang"]],
        "roles": ["approver"],  # 科室负责人 is one of the names of the approver role
        "department_ids": [1],
        "on_duty": True,
        "duty_roles": ["A"],
    }
    assert (rule["channel_ids"], rule["level"], rule["per"]) == ([1], "major", "post")
    assert (rule["dedup_window_s"], rule["rate_limit_per_hour"], rule["digest_minutes"]) == (
        3600, 5, 10,
    )  # fmt: skip
    assert rule["escalate"] is False and rule["note"] == "萧山专项"

    listed = cli("alerts", "rules").stdout
    assert "萧山安全" in listed and "启用" in listed and "值班群" in listed
    shown = cli("alerts", "rule-show", "萧山安全").stdout
    assert "不低于重大" in shown and "每 10 分钟汇总发送" in shown and "逐级上报：否" in shown
    assert office.json("alerts", "rule-show", "1")["name"] == "萧山安全"

    assert "已停用" in cli("alerts", "rule-disable", "萧山安全").stdout
    assert office.json("alerts", "rules")[0]["enabled"] is False
    cli("alerts", "rule-enable", "1")
    assert office.json("alerts", "rules")[0]["enabled"] is True
    # A plain rule with nobody to tell is allowed, and the command says what that means.
    plain = cli("alerts", "rule-add", "全部信息").stdout
    assert "只出现在预警列表里" in plain and "任何新信息" in plain
    assert "已删除" in cli("alerts", "rule-remove", "萧山安全").stdout
    assert [r["name"] for r in office.json("alerts", "rules")] == ["全部信息"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--topic", "没有这个方案"], "no topic '没有这个方案'"),
        (["--min-level", "huge"], "--min-level 'huge' is not a level"),
        (["--level", "严重"], "--level '严重' is not a level"),
        (["--channel", "nowhere"], "No channel 'nowhere'"),
        (["--to", "nobody"], "No user 'nobody'"),
        (["--department", "财务科"], "No department '财务科'"),
        (["--role", "boss"], "Unknown role 'boss'"),
        (["--source", "twitter"], "No source 'twitter'"),
        (["--polarity", "angry"], "unknown polarity 'angry'"),
        (["--emotion", "bored"], "unknown emotion 'bored'"),
        (["--category", "sports"], "no category 'sports'"),
        (["--tier", "tabloid"], "unknown tier 'tabloid'"),
        (["--region", "亚特兰蒂斯"], "unknown or ambiguous region"),
        (["--query", "爆炸 AND ("], "^"),
        (["--spike", "--emotion", "angry"], "apply to single posts"),
        (["--per", "day"], '"per" is "event"'),
        (["--duty-role", "C"], "duty role 'C'"),
    ],
)
def test_rule_add_refuses_what_does_not_exist_with_a_clear_message(
    office: Office, args: list[str], message: str
) -> None:
    stderr = office.refused("alerts", "rule-add", "坏规则", *args)
    assert message in stderr
    assert office.json("alerts", "rules") == []


def test_unknown_rule_and_duplicate_name_are_refused(office: Office) -> None:
    office.cli("alerts", "rule-add", "爆炸", "--query", "爆炸")
    assert "already a rule named '爆炸'" in office.refused("alerts", "rule-add", "爆炸")
    for command in ("rule-show", "rule-remove", "rule-enable", "rule-disable"):
        assert "No alert rule named '起火'" in office.refused("alerts", command, "起火")
    assert "No alert rule 7" in office.refused("alerts", "rule-show", "7")


def test_alerts_from_ingest_are_listed_shown_and_acknowledged(office: Office) -> None:
    cli = office.cli
    cli("alerts", "rule-add", "爆炸", "--topic", "化工厂", "--query", "爆炸 | 起火", "--per", "post",
        "--to", "zhang", "--role", "handler")  # fmt: skip
    assert office.ingest(FIRE, UNRELATED, SUBWAY) == 1
    (alert,) = office.json("alerts", "list")
    assert alert["title"].startswith("浙江杭州萧山区") and alert["status"] == "open"
    listed = cli("alerts", "list").stdout
    assert "待确认" in listed and "爆炸" in listed and "浙江杭州萧山区" in listed

    aid = str(alert["id"])
    detail = office.json("alerts", "show", aid)
    assert detail["reason"]["rule"] == "爆炸"
    # Two dead: the event's first grade (较大) is news too.
    assert [e["what"] for e in detail["log"]] == ["raised", "level_up"]
    told = sorted(d["user"] for d in detail["deliveries"] if d["purpose"] == "alert")
    assert told == ["张三", "李四"]
    shown = cli("alerts", "show", aid).stdout
    assert "规则：爆炸" in shown and "条件：爆炸 | 起火" in shown and "命中方案：化工厂" in shown
    assert "原文：https://weibo.example/0" in shown and "已发送" in shown
    assert "触发" in shown and "等级上升" in shown

    assert "已确认：张三" in cli("alerts", "ack", aid, "--by", "zhang").stdout
    acked = office.json("alerts", "show", aid)
    assert (acked["status"], acked["acked_by"], acked["acked_via"]) == (
        "acknowledged",
        "张三",
        "cli",
    )
    assert "确认过" in cli("alerts", "ack", aid, "--by", "李四").stdout
    assert office.json("alerts", "show", aid)["acked_by"] == "张三"
    assert office.json("alerts", "list", "--status", "open") == []
    assert len(office.json("alerts", "list", "--status", "acknowledged")) == 1
    assert "已确认" in cli("alerts", "list").stdout

    assert "No alert 999" in office.refused("alerts", "ack", "999", "--by", "张三")
    assert "no alert 999" in office.refused("alerts", "show", "999")
    assert "use open or acknowledged" in office.refused("alerts", "list", "--status", "closed")


def test_escalation_policy_is_set_shown_and_run_by_the_clock(office: Office) -> None:
    cli = office.cli
    out = cli("alerts", "escalation-set", "一般", "--step", "15m:role=handler",
              "--step", "0.5h：user=wang，on_duty=A", "--repeat-minutes", "60",
              "--max-repeats", "1").stdout  # fmt: skip
    assert "预警后 45 分钟" in out and "王主任、值班人员（主班）" in out
    (policy,) = office.json("alerts", "escalation")
    assert policy["level"] == "general" and policy["max_repeats"] == 1
    assert [s["after_minutes"] for s in policy["steps"]] == [15, 30]
    assert policy["steps"][0]["recipients"]["roles"] == ["handler"]
    assert policy["steps"][1]["recipients"]["user_ids"] == [office.users["wang"]]
    assert policy["steps"][1]["recipients"]["duty_roles"] == ["A"]
    text = cli("alerts", "escalation").stdout
    assert "一般（IV级）：" in text and "重大（II级）：不逐级上报" in text
    assert "之后每 60 分钟再通知最后一步的人，最多 1 次" in text

    cli("alerts", "rule-add", "地铁", "--query", "地铁", "--per", "post", "--to", "zhang")
    assert office.ingest(SUBWAY) == 1
    (alert,) = office.json("alerts", "list")
    assert alert["next_escalation_at"] == (T0 + timedelta(minutes=15)).isoformat()
    # Every step is overdue at the real time; each tick takes the next one.
    assert office.json("alerts", "tick")["escalated"] == 1
    assert "逐级上报 1 条" in cli("alerts", "tick").stdout
    assert office.json("alerts", "tick")["escalated"] == 1  # the one repeat
    assert office.json("alerts", "tick") == {
        "escalated": 0, "digests": 0, "duty_alerts": 0, "deliveries": 0, "case_alerts": 0,
    }  # fmt: skip
    detail = office.json("alerts", "show", str(alert["id"]))
    told = [d["user"] for d in detail["deliveries"] if d["purpose"] == "escalation"]
    assert told == ["李四", "王主任", "王主任"]
    assert [e["what"] for e in detail["log"]].count("escalated") == 3

    assert "不再逐级上报" in cli("alerts", "escalation-set", "general").stdout
    assert office.json("alerts", "escalation")[0]["steps"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["huge", "--step", "15m:role=handler"], "level 'huge' is not a level"),
        (["一般", "--step", "15:role=handler"], "'15' is not a delay"),
        (["一般", "--step", "role=handler"], "is not a delay"),
        (["一般", "--step", "15m:boss=li"], "'boss=li' is not a recipient"),
        (["一般", "--step", "15m:channel=值班群"], "tells nobody"),
        (["一般", "--step", "15m:role=boss"], "Step 1: Unknown role 'boss'"),
        (["一般", "--step", "15m:user=nobody"], "No user 'nobody'"),
        (["一般", "--step", "15m:role=handler", "--channel", "nowhere"], "No channel 'nowhere'"),
        (["一般", "--step", "15m:role=handler", "--repeat-minutes", "60"], "--max-repeats"),
        (["一般", "--step", "9999h:role=handler"], "Step 1, after_minutes"),
    ],
)
def test_escalation_set_refuses_bad_steps(office: Office, args: list[str], message: str) -> None:
    assert message in office.refused("alerts", "escalation-set", *args)
    assert office.json("alerts", "escalation") == []


def test_channels_test_message_reaches_a_webhook_receiver(office: Office) -> None:
    cli = office.cli
    with LoopbackServer() as receiver:
        receiver.route("/hook", Reply(200, b"ok", content_type="text/plain"))
        receiver.route("/down", Reply(503, b"busy", content_type="text/plain"))
        cli("alerts", "channel-add", "值班群", "--kind", "webhook", "--target",
            receiver.url("/hook"), "--secret", SECRET)  # fmt: skip
        assert "ok" in cli("alerts", "channel-test", "值班群").stdout
        (request,) = receiver.requests
        payload = json.loads(request.body)
        assert payload["version"] == 1 and payload["data"]["purpose"] == "test"
        assert payload["subject"].startswith("【测试消息·一般】听风预警通道测试")
        assert request.headers["x-tingfeng-signature"] == sign(
            SECRET, request.headers["x-tingfeng-timestamp"], request.body
        )
        cli("alerts", "channel-add", "备用", "--kind", "webhook", "--target", receiver.url("/down"))
        stderr = office.refused("alerts", "channel-test", "备用", code=1)
        assert "answered 503" in stderr and "临时故障" in stderr
        assert receiver.hits("/down") == 1

    listed = office.json("alerts", "channels")
    assert [c["name"] for c in listed] == ["值班群", "备用"]
    assert listed[0]["config"] == {"secret": "***"}
    text = cli("alerts", "channels").stdout
    assert "值班群" in text and "secret=***" in text and SECRET not in text

    cli("alerts", "rule-add", "爆炸", "--query", "爆炸", "--channel", "值班群", "--channel", "备用")
    assert "已从 1 条规则中移除" in cli("alerts", "channel-remove", "值班群").stdout
    assert office.json("alerts", "rules")[0]["channel_ids"] == [2]
    assert [c["name"] for c in office.json("alerts", "channels")] == ["备用"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "sms", "--target", "13800000000"], "unknown channel kind 'sms'"),
        (["--kind", "webhook", "--target", "http://127.0.0.1:9/", "--secret", "short"],
         "at least 16 characters"),
        (["--kind", "apprise", "--target", "dingtalk://abcdef123456", "--secret", SECRET],
         "do not know the setting(s) secret"),
        (["--kind", "apprise", "--target", "example.com/x"], "not an apprise URL"),
        (["--kind", "email"], "e-mail is not set up"),
    ],
)  # fmt: skip
def test_channel_add_refuses_what_cannot_work(
    office: Office, args: list[str], message: str
) -> None:
    assert message in office.refused("alerts", "channel-add", "坏通道", *args)
    assert office.json("alerts", "channels") == []


def test_channel_errors_and_the_network_guard(office: Office) -> None:
    # Without the allowance a receiver on 127.0.0.1 is an internal address and is refused.
    stderr = office.refused("alerts", "channel-add", "内网", "--kind", "webhook", "--target",
                            "http://127.0.0.1:9/hook", TINGFENG_FETCH_ALLOWED_NETWORKS="[]")  # fmt: skip
    assert "fetch_allowed_networks" in stderr
    office.cli(
        "alerts", "channel-add", "群", "--kind", "webhook", "--target", "http://127.0.0.1:9/"
    )
    assert "already a channel named '群'" in office.refused(
        "alerts", "channel-add", "群", "--kind", "webhook", "--target", "http://127.0.0.1:9/"
    )
    for command in ("channel-test", "channel-remove"):
        assert "No channel 'nowhere'" in office.refused("alerts", command, "nowhere")
    unreachable = office.refused("alerts", "channel-test", "群", code=1)
    assert "could not reach webhook" in unreachable


def test_failed_messages_are_listed_and_retried(office: Office) -> None:
    cli = office.cli
    with LoopbackServer() as receiver:
        receiver.route("/hook", Reply(404, b"no such hook", content_type="text/plain"))
        cli("alerts", "channel-add", "群", "--kind", "webhook", "--target", receiver.url("/hook"))
        cli("alerts", "rule-add", "爆炸", "--query", "地铁", "--per", "post", "--channel", "群")
        assert office.ingest(SUBWAY) == 1
        engine = make_engine(office.url)
        dispatcher = Dispatcher(engine, office.settings, threads=1)
        try:
            assert dispatcher.run_once() == 1 and dispatcher.failed == 1  # 404: permanent
            (failed,) = office.json("alerts", "failed")
            assert failed["channel"] == "群" and "answered 404" in failed["last_error"]
            text = cli("alerts", "failed").stdout
            assert "群" in text and "404" in text
            assert "no failed message 999" in office.refused("alerts", "retry", "999")

            receiver.route("/hook", Reply(200, b"ok", content_type="text/plain"))
            assert "1 条消息已重新排队" in cli("alerts", "retry", str(failed["id"])).stdout
            assert office.json("alerts", "failed") == []
            assert dispatcher.run_once() == 1 and dispatcher.sent == 1
            with engine.connect() as conn:
                status = select(Delivery.status).where(Delivery.id == failed["id"])
                assert conn.execute(status).scalar() == "sent"
        finally:
            dispatcher.stop()
            engine.dispose()
        assert receiver.hits("/hook") == 2
        assert "杭州地铁" in json.loads(receiver.requests[-1].body)["subject"]
    assert "0 条消息" in cli("alerts", "retry").stdout


def test_tick_sends_the_digest_of_held_alerts(office: Office) -> None:
    office.cli("alerts", "rule-add", "汇总", "--query", "地铁", "--per", "post",
               "--digest-minutes", "30", "--to", "li")  # fmt: skip
    assert office.ingest(SUBWAY, SUBWAY + "还在停") == 2
    assert "待确认·待汇总" in office.cli("alerts", "list").stdout
    out = office.cli("alerts", "tick").stdout
    assert "汇总 1 份" in out and "写入消息 1 条" in out
    assert [a["delivery"] for a in office.json("alerts", "list")] == ["sent", "sent"]
