"""Alert rules in the live pipeline: raised in the ingest transaction, folded per event, held
by the rate limit and sent as a digest, re-notified on a level rise, escalated with a
controllable clock, acknowledged. On SQLite and a real PostgreSQL server (`db_url`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from tingfeng.alerts import clock
from tingfeng.alerts.ack import AckError, acknowledge, read_token
from tingfeng.alerts.engine import AlertContext
from tingfeng.alerts.escalation import EscalationError, set_policy
from tingfeng.alerts.rules import RuleError
from tingfeng.alerts.service import alert_detail, create_rule, inbox, list_alerts, unread_count
from tingfeng.alerts.signals import level_listener
from tingfeng.collect.items import RawItem
from tingfeng.collect.sources import add_source
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import Alert, Delivery, EventPost
from tingfeng.events.decisions import override_grade
from tingfeng.ingest.ingestor import Ingestor, SourceRef
from tingfeng.office.people import add_department, add_user
from tingfeng.secret import secret_key
from tingfeng.settings import Settings
from tingfeng.topics.store import create_topic

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

FIRE = "浙江杭州萧山区一化工厂发生爆炸起火，现场浓烟滚滚，已造成2人死亡、5人受伤，消防正在灭火。"
FIRE_2 = "萧山区化工厂爆炸起火事故最新：死亡人数升至3人，消防仍在现场灭火，周边居民已疏散。"
SUBWAY = "杭州地铁2号线早高峰发生故障停运半小时，大量乘客滞留站台，地铁公司致歉。"
UNRELATED = "今天天气不错，去西湖边散步，心情很好。"


@dataclass
class Env:
    engine: Engine
    settings: Settings
    source: SourceRef
    users: dict[str, int] = field(default_factory=dict)
    clock: list[datetime] = field(default_factory=lambda: [T0])

    def now(self) -> datetime:
        return self.clock[0]

    def advance(self, **kw: float) -> datetime:
        self.clock[0] = self.clock[0] + timedelta(**kw)
        return self.clock[0]

    def ingestor(self) -> Ingestor:
        return Ingestor(self.engine, self.settings, now=self.now)

    def rule(self, **values: object) -> int:
        with write_transaction(self.engine) as conn:
            return create_rule(conn, values, self.now())["id"]

    def alerts(self) -> list[dict]:
        with self.engine.connect() as conn:
            return list(reversed(list_alerts(conn, limit=500)))

    def deliveries(self, **where: object) -> list:
        q = select(Delivery).order_by(Delivery.id)
        for key, value in where.items():
            q = q.where(getattr(Delivery, key) == value)
        with self.engine.connect() as conn:
            return conn.execute(q).all()

    def tick(self) -> clock.TickResult:
        return clock.tick(self.engine, AlertContext(self.settings), self.now())


@pytest.fixture
def env(db_url: str, settings: Settings) -> Iterator[Env]:
    engine = make_engine(db_url)
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
    yield Env(
        engine,
        settings.model_copy(update={"database_url": db_url, "public_url": "https://yq.example.cn"}),
        SourceRef(source.id, "Asia/Shanghai"),
        users,
    )
    engine.dispose()


def item(ext: str, text: str, minutes: float = 0, **kw: object) -> RawItem:
    return RawItem(
        text=text,
        external_id=ext,
        platform="weibo",
        url=f"https://weibo.example/{ext}",
        published_at=T0 + timedelta(minutes=minutes),
        **kw,  # type: ignore[arg-type]
    )


def test_post_rule_raises_in_app_alerts_with_reasons(env: Env) -> None:
    env.rule(
        name="爆炸",
        conditions={"query": "爆炸 | 起火", "categories": ["public-safety"]},
        per="post",
        recipients={"user_ids": [env.users["zhang"]], "roles": ["handler"]},
    )
    stats = env.ingestor().ingest(
        env.source, [item("a", FIRE), item("b", UNRELATED), item("c", SUBWAY)]
    )
    assert stats.stored == 3 and stats.alerts == 1
    (alert,) = env.alerts()
    assert alert["title"].startswith("浙江杭州萧山区") and alert["status"] == "open"
    assert alert["reason"]["rule"] == "爆炸"
    assert alert["reason"]["matched"] == {"categories": ["public-safety"], "query": "爆炸 | 起火"}
    # In-app messages for the named person and everyone with the role, delivered on writing.
    app = env.deliveries(alert_id=alert["id"])
    assert sorted(d.user_id for d in app) == sorted([env.users["zhang"], env.users["li"]])
    assert all(d.status == "sent" and d.channel_id is None for d in app)
    message = app[0].message
    assert message["subject"].startswith("【预警·一般】浙江杭州萧山区")
    assert "https://yq.example.cn/alerts/" in message["text"]
    assert "确认收到: https://yq.example.cn/alerts/ack/" in message["text"]
    # The acknowledge link names the alert and the person it was sent to.
    token = message["ack_url"].rsplit("/", 1)[1]
    parsed = read_token(secret_key(env.settings), token)
    assert parsed.alert_id == alert["id"] and parsed.user_id == app[0].user_id
    with pytest.raises(AckError):
        read_token(secret_key(env.settings), token[:-2] + "xx")
    with env.engine.connect() as conn:
        assert unread_count(conn, env.users["zhang"]) == 1
        assert unread_count(conn, env.users["wang"]) == 0
        assert inbox(conn, env.users["zhang"])[0]["alert_id"] == alert["id"]


def test_event_rule_folds_matches_into_one_alert_and_repeats_nothing(env: Env) -> None:
    with write_transaction(env.engine) as conn:
        topic = create_topic(conn, name="化工厂", query="化工厂 (爆炸 | 起火)")
    env.rule(
        name="方案命中",
        conditions={"topic_ids": [topic.id]},
        recipients={"user_ids": [env.users["zhang"]]},
    )
    ingestor = env.ingestor()
    first = ingestor.ingest(env.source, [item("a", FIRE)])
    second = ingestor.ingest(env.source, [item("b", FIRE_2, 30), item("c", SUBWAY, 31)])
    again = ingestor.ingest(env.source, [item("a", FIRE), item("b", FIRE_2, 30)])
    assert (first.alerts, second.alerts, again.stored, again.alerts) == (1, 0, 0, 0)
    (alert,) = env.alerts()
    with env.engine.connect() as conn:
        event_id = conn.execute(select(EventPost.event_id)).scalars().first()
    assert alert["event_id"] == event_id and alert["hits"] == 2
    assert alert["reason"]["matched"] == {"topics": [topic.id]}
    # Folded matches send nothing more; the event's first grade (较大: two dead) is news.
    assert [d.purpose for d in env.deliveries()] == ["alert", "level_up"]
    assert alert["level"] == "serious"


def test_rate_limit_holds_alerts_for_a_digest_and_loses_none(env: Env) -> None:
    env.rule(
        name="风暴",
        conditions={"query": "停运"},
        per="post",
        rate_limit_per_hour=2,
        recipients={"user_ids": [env.users["zhang"]]},
    )
    texts = [f"{SUBWAY}第{n}条乘客反映" for n in range(6)]
    env.ingestor().ingest(env.source, [item(f"s{n}", t, n) for n, t in enumerate(texts)])
    alerts = env.alerts()
    assert len(alerts) == 6
    assert [a["delivery"] for a in alerts] == ["sent", "sent", "held", "held", "held", "held"]
    assert len(env.deliveries()) == 2
    assert env.tick().digests == 0  # not yet: the storm digest waits its period
    env.advance(minutes=16)
    result = env.tick()
    assert result.digests == 1
    (digest,) = env.deliveries(purpose="digest")
    assert "共 4 条预警" in digest.message["text"]
    assert all(f"/alerts/{a['id']}" in digest.message["text"] for a in alerts[2:])
    assert [a["delivery"] for a in env.alerts()] == ["sent"] * 6
    assert env.tick().digests == 0 and len(env.deliveries(purpose="digest")) == 1


def test_digest_mode_collects_and_sends_every_n_minutes(env: Env) -> None:
    env.rule(
        name="汇总",
        conditions={"query": "地铁"},
        per="post",
        digest_minutes=30,
        recipients={"user_ids": [env.users["li"]]},
    )
    env.ingestor().ingest(env.source, [item("s1", SUBWAY), item("s2", SUBWAY + "还在停")])
    assert [a["delivery"] for a in env.alerts()] == ["held", "held"]
    assert env.deliveries() == []
    env.advance(minutes=29)
    assert env.tick().digests == 0
    env.advance(minutes=2)
    assert env.tick().digests == 1
    (digest,) = env.deliveries()
    assert digest.purpose == "digest" and digest.user_id == env.users["li"]


def test_escalation_steps_with_a_controllable_clock_and_ack_stops_it(env: Env) -> None:
    with write_transaction(env.engine) as conn:
        set_policy(
            conn,
            "general",
            [
                {"after_minutes": 15, "recipients": {"roles": ["handler"]}},
                {"after_minutes": 30, "recipients": {"roles": ["approver"]}},
            ],
            repeat_minutes=60,
            max_repeats=1,
            now=env.now(),
        )
    env.rule(name="地铁", conditions={"query": "地铁"}, per="post",
             recipients={"user_ids": [env.users["zhang"]]})  # fmt: skip
    env.ingestor().ingest(env.source, [item("s1", SUBWAY)])
    (alert,) = env.alerts()
    assert alert["next_escalation_at"] == (T0 + timedelta(minutes=15)).isoformat()

    def escalations() -> list[int]:
        return [d.user_id for d in env.deliveries(purpose="escalation")]

    env.advance(minutes=14)
    assert env.tick().escalated == 0
    env.advance(minutes=1)
    assert env.tick().escalated == 1
    assert escalations() == [env.users["li"]]
    assert "已 15 分钟无人确认" in env.deliveries(purpose="escalation")[0].message["text"]
    env.advance(minutes=29)
    assert env.tick().escalated == 0
    env.advance(minutes=1)
    assert env.tick().escalated == 1
    assert escalations() == [env.users["li"], env.users["wang"]]
    env.advance(minutes=60)  # the one repeat of the last step
    assert env.tick().escalated == 1
    assert escalations() == [env.users["li"], env.users["wang"], env.users["wang"]]
    env.advance(minutes=600)
    assert env.tick().escalated == 0  # repeats used up

    # A second alert, acknowledged before its first step: nobody else is told.
    env.ingestor().ingest(env.source, [item("s2", SUBWAY + "第二次")])
    second = env.alerts()[-1]
    with write_transaction(env.engine) as conn:
        done = acknowledge(conn, second["id"], by="张三", via="web", now=env.now(),
                           user_id=env.users["zhang"])  # fmt: skip
        again = acknowledge(conn, second["id"], by="李四", via="api", now=env.now())
    assert not done.already and again.already and again.by == "张三"
    env.advance(minutes=120)
    assert env.tick().escalated == 0
    with env.engine.connect() as conn:
        detail = alert_detail(conn, second["id"])
    assert detail is not None and detail["status"] == "acknowledged"
    assert detail["acked_by"] == "张三" and detail["acked_via"] == "web"
    assert [e["what"] for e in detail["log"]] == ["raised", "acknowledged"]


def test_level_rise_renotifies_and_reopens_an_acknowledged_alert(env: Env) -> None:
    with write_transaction(env.engine) as conn:
        topic = create_topic(conn, name="化工厂", query="化工厂")
        set_policy(conn, "major", [{"after_minutes": 10, "recipients": {"roles": ["approver"]}}],
                   now=env.now())  # fmt: skip
    env.rule(name="化工厂事件", conditions={"topic_ids": [topic.id]},
             recipients={"user_ids": [env.users["zhang"]]})  # fmt: skip
    env.rule(name="重大以上", conditions={"min_level": "major"},
             recipients={"roles": ["approver"]})  # fmt: skip
    env.ingestor().ingest(env.source, [item("a", FIRE)])
    (alert,) = env.alerts()
    with write_transaction(env.engine) as conn:
        acknowledge(conn, alert["id"], by="张三", via="web", now=env.now())
        override_grade(conn, alert["event_id"], "major", reason="两人死亡", by="李四",
                       on_level=level_listener(env.settings, env.now))  # fmt: skip
    first, second = env.alerts()
    assert first["id"] == alert["id"]
    assert first["level"] == "major" and first["status"] == "open" and first["acked_by"] is None
    assert first["next_escalation_at"] == (T0 + timedelta(minutes=10)).isoformat()
    # The first grade (较大) came with the batch; the override to 重大 is told again.
    graded, up = env.deliveries(purpose="level_up")
    assert "等级由一般升为较大" in graded.message["text"]
    assert up.user_id == env.users["zhang"]
    assert (
        "【事件等级上升·重大】" in up.message["subject"]
        and "等级由较大升为重大" in up.message["text"]
    )
    # The min_level rule fires when the event reaches the level, for the director.
    assert second["reason"]["rule"] == "重大以上" and second["event_id"] == alert["event_id"]
    assert second["reason"]["matched"]["level"] == "major"
    assert [d.user_id for d in env.deliveries(alert_id=second["id"])] == [env.users["wang"]]
    with env.engine.connect() as conn:
        log = [e["what"] for e in alert_detail(conn, alert["id"])["log"]]
    assert log == ["raised", "level_up", "acknowledged", "level_up"]


def test_rules_and_policies_are_checked_before_saving(env: Env) -> None:
    with pytest.raises(RuleError, match="polarities: unknown polarity 'angry'"):
        env.rule(name="x", conditions={"polarities": ["angry"]})
    with pytest.raises(RuleError, match="at character 8"):
        env.rule(name="x", conditions={"query": "爆炸 AND ("})
    with pytest.raises(RuleError, match="apply to single posts"):
        env.rule(name="x", conditions={"spike": True, "emotions": ["angry"]})
    with pytest.raises(RuleError, match="No topic with id 99"):
        env.rule(name="x", conditions={"topic_ids": [99]})
    with pytest.raises(RuleError, match="Unknown role 'boss'"):
        env.rule(name="x", recipients={"roles": ["boss"]})
    with pytest.raises(RuleError, match="No user with id 999"):
        env.rule(name="x", recipients={"user_ids": [999]})
    with pytest.raises(RuleError, match="Extra inputs"):
        env.rule(name="x", conditions={"keyword": "爆炸"})
    with write_transaction(env.engine) as conn, pytest.raises(EscalationError, match="Step 1"):
        set_policy(conn, "major", [{"after_minutes": 0, "recipients": {"roles": ["handler"]}}],
                   now=env.now())  # fmt: skip
    # Region names become division codes; a rule on a province catches its counties.
    rule_id = env.rule(name="四川", conditions={"regions": ["四川省"]}, per="post",
                       recipients={"user_ids": [env.users["zhang"]]})  # fmt: skip
    assert rule_id
    env.ingestor().ingest(
        env.source,
        [item("r1", "成都市武侯区一小区电梯故障困人，物业迟迟不来。"), item("r2", UNRELATED)],
    )
    (alert,) = env.alerts()
    assert "510000" in alert["reason"]["matched"]["regions"]
    with env.engine.connect() as conn:
        assert conn.execute(select(func.count(Alert.id))).scalar() == 1


def test_a_missing_shift_report_is_alerted_once_and_a_zero_report_prevents_it(env: Env) -> None:
    from tingfeng.alerts.duty import add_shift, file_report

    with write_transaction(env.engine) as conn:
        # 08:00–20:00 Beijing time (00:00–12:00 UTC), every day, from 20 November 2026.
        day = add_shift(
            conn, "白班", "08:00", 12, rotation={"A": [env.users["zhang"]]},
            starts_on="2026-11-20", report_to={"roles": ["approver"]},
            now=T0 - timedelta(days=1),
        )  # fmt: skip
        # The 21st's shift files a zero report (零报告) in time.
        file_report(conn, day, T0.date() + timedelta(days=1), kind="zero",
                    user_id=env.users["zhang"], now=T0 + timedelta(days=1, hours=5),
                    tz="Asia/Shanghai")  # fmt: skip
    env.clock[0] = T0 + timedelta(hours=4, minutes=29)  # the 20th's shift ended at 12:00 UTC
    assert env.tick().duty_alerts == 0  # within the grace period (30 min)
    env.clock[0] = T0 + timedelta(hours=4, minutes=31)
    assert env.tick().duty_alerts == 1
    (alert,) = env.alerts()
    assert alert["kind"] == "duty" and "11月20日白班未提交值班报告" in alert["title"]
    told = sorted(d.user_id for d in env.deliveries(alert_id=alert["id"]))
    assert told == sorted([env.users["zhang"], env.users["wang"]])  # on duty + the director
    env.clock[0] = T0 + timedelta(days=1, hours=5)
    assert env.tick().duty_alerts == 0  # not twice; and the 21st filed its zero report
    assert len(env.alerts()) == 1
