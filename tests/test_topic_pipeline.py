"""Topics and events in the live pipeline: posts matched as they are stored, grouped into events
with reposts, graded with an explanation, merged/split/overridden by a person; `topics test`
and the preview over stored posts. On SQLite and a real PostgreSQL server (`db_url`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from tingfeng.collect.items import RawItem
from tingfeng.collect.sources import add_source
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import Event, EventDecision, EventGrade, EventPost, Post, TopicMatch
from tingfeng.events.decisions import (
    EventError,
    merge_events,
    override_grade,
    split_event,
)
from tingfeng.events.profile import refresh_event
from tingfeng.ingest.ingestor import Ingestor, SourceRef
from tingfeng.settings import Settings
from tingfeng.topics import QuerySyntaxError
from tingfeng.topics.store import TopicError, create_topic, get_topic, update_topic
from tingfeng.topics.stored import match_stored, preview

T0 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)

FIRE = "浙江杭州萧山区一化工厂发生爆炸起火，现场浓烟滚滚，已造成2人死亡、5人受伤，消防正在灭火。"
FIRE_2 = "萧山区化工厂爆炸起火事故最新：死亡人数升至3人，消防仍在现场灭火，周边居民已疏散。"
SUBWAY = "杭州地铁2号线早高峰发生故障停运半小时，大量乘客滞留站台，地铁公司致歉。"
TRADITIONAL = "杭州地鐵2號線故障停運，乘客滯留，地鐵公司道歉。"
UNRELATED = "今天天气不错，去西湖边散步，心情很好。"
ADVERT = "萧山化工厂爆炸 广告：专业灭火器批发，欢迎来电。"


@dataclass
class Env:
    engine: Engine
    settings: Settings
    source: SourceRef

    def ingestor(self) -> Ingestor:
        return Ingestor(self.engine, self.settings)

    def ids(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {e: i for e, i in conn.execute(select(Post.external_id, Post.id))}

    def scalar(self, stmt):  # type: ignore[no-untyped-def]
        with self.engine.connect() as conn:
            return conn.execute(stmt).scalar()


@pytest.fixture
def env(db_url: str, settings: Settings) -> Iterator[Env]:
    engine = make_engine(db_url)
    upgrade(engine)
    with write_transaction(engine) as conn:
        source = add_source(conn, name="weibo", kind="push", config={}, timezone="Asia/Shanghai")
    yield Env(
        engine,
        settings.model_copy(update={"database_url": db_url}),
        SourceRef(source.id, "Asia/Shanghai"),
    )
    engine.dispose()


def item(ext: str, text: str, minutes: int, **kw: object) -> RawItem:
    return RawItem(
        text=text,
        external_id=ext,
        platform="weibo",
        published_at=T0 + timedelta(minutes=minutes),
        **kw,  # type: ignore[arg-type]
    )


def add_topics(env: Env) -> tuple[int, int]:
    with write_transaction(env.engine) as conn:
        fire = create_topic(
            conn, "萧山爆炸", "(爆炸 OR 起火) AND 萧山", exclusions=["广告"], by="test"
        ).id
        subway = create_topic(conn, "地铁", "地铁 NEAR/10 (故障 OR 停运)", by="test").id
    return fire, subway


def test_posts_are_matched_grouped_and_graded_as_they_are_stored(env: Env) -> None:
    fire_topic, subway_topic = add_topics(env)
    ingestor = env.ingestor()
    ingestor.ingest(
        env.source,
        [
            item("f1", FIRE, 0),
            item("r1", "转发微博", 3, reposts_of="f1"),
            item("r2", "太可怕了 //@某网友:转发微博", 5, reposts_of="r1"),
            item("s1", SUBWAY, 10),
            item("s2", TRADITIONAL, 12),
            item("u1", UNRELATED, 15),
            item("ad", ADVERT, 16),
            item("f2", FIRE_2, 40),
        ],
    )
    ids = env.ids()
    with env.engine.connect() as conn:
        matches = {
            (t, p): terms
            for t, p, terms in conn.execute(
                select(TopicMatch.topic_id, TopicMatch.post_id, TopicMatch.terms)
            )
        }
        events = dict(conn.execute(select(EventPost.post_id, EventPost.event_id)).all())
        joined = dict(conn.execute(select(EventPost.post_id, EventPost.joined_by)).all())
    # Matching: the Traditional post matches the Simplified query; the advert is excluded.
    assert {p for t, p in matches if t == fire_topic} == {ids["f1"], ids["f2"]}
    assert {p for t, p in matches if t == subway_topic} == {ids["s1"], ids["s2"]}
    assert set(matches[(fire_topic, ids["f1"])]) >= {"爆炸", "萧山"}
    # Events: reposts follow their original though they match no topic; similar posts join.
    assert events[ids["r1"]] == events[ids["f1"]] == events[ids["r2"]] == events[ids["f2"]]
    assert events[ids["s1"]] == events[ids["s2"]] != events[ids["f1"]]
    assert ids["u1"] not in events and ids["ad"] not in events
    assert joined[ids["r1"]] == "repost" and joined[ids["f1"]] == "new"
    assert joined[ids["f2"]] == "content"
    # The profile and grade are computed with an explanation.
    fire_event = events[ids["f1"]]
    with write_transaction(env.engine) as conn:
        refresh_event(conn, fire_event)
    with env.engine.connect() as conn:
        event = conn.execute(select(Event).where(Event.id == fire_event)).one()
    assert event.posts == 4
    assert event.first_post_id == ids["f1"]
    assert event.level in ("general", "serious", "major", "critical")
    assert event.grade["explanation_zh"] and event.grade["factors"]
    consequences = next(f for f in event.grade["factors"] if f["name"] == "consequences")
    assert consequences["score"] > 0  # 死亡 / 受伤 were found
    spread = event.profile["spread"]
    assert spread["size"] == 3 and spread["depth"] == 2
    assert event.profile["timeline"] == [["2024-06-01T08:00:00+00:00", 4]]


def test_a_person_can_merge_split_and_override_and_ingest_follows(env: Env) -> None:
    add_topics(env)
    ingestor = env.ingestor()
    ingestor.ingest(env.source, [item("f1", FIRE, 0), item("s1", SUBWAY, 10)])
    ids = env.ids()
    with env.engine.connect() as conn:
        events = dict(conn.execute(select(EventPost.post_id, EventPost.event_id)).all())
    fire, subway = events[ids["f1"]], events[ids["s1"]]
    with write_transaction(env.engine) as conn:
        merge_events(conn, fire, subway, by="张三", reason="同一天的城市安全事件")
    # A later repost of the merged event's post lands in the kept event.
    ingestor.ingest(env.source, [item("r1", "转发微博", 20, reposts_of="s1")])
    with env.engine.connect() as conn:
        assert (
            conn.execute(
                select(EventPost.event_id).where(EventPost.post_id == env.ids()["r1"])
            ).scalar()
            == fire
        )
        assert conn.execute(select(Event.status).where(Event.id == subway)).scalar() == "merged"
    with write_transaction(env.engine) as conn:
        new = split_event(conn, fire, [ids["s1"], env.ids()["r1"]], by="张三", reason="不是一回事")
        with pytest.raises(EventError, match="reason"):
            override_grade(conn, fire, "重大", reason=" ", by="张三")
        override_grade(conn, fire, "重大", reason="涉及人员伤亡", by="李四")
    assert new != fire
    # The next subway post follows the split-off event, not the fire.
    ingestor.ingest(env.source, [item("s3", SUBWAY.replace("半小时", "一小时"), 30)])
    with env.engine.connect() as conn:
        s3 = conn.execute(
            select(EventPost.event_id).where(EventPost.post_id == env.ids()["s3"])
        ).scalar()
        assert s3 == new
        event = conn.execute(select(Event).where(Event.id == fire)).one()
        assert event.level == "major" and event.grade["override"]["by"] == "李四"
        kinds = [d for d in conn.execute(select(EventDecision.kind)).scalars()]
        assert kinds == ["merge", "split", "override"]
        history = conn.execute(select(EventGrade.reason).where(EventGrade.event_id == fire))
        assert "涉及人员伤亡" in list(history.scalars())
    # Recomputing keeps the override (the computed grade is still shown beside it).
    with write_transaction(env.engine) as conn:
        refresh_event(conn, fire)
    assert env.scalar(select(Event.level).where(Event.id == fire)) == "major"


def test_topics_test_and_preview_count_stored_posts_with_the_same_matcher(env: Env) -> None:
    env.ingestor().ingest(
        env.source,
        [
            item("f1", FIRE, 0),
            item("f2", FIRE_2, 40),
            item("s1", SUBWAY, 10),
            item("s2", TRADITIONAL, 12),
            item("ad", ADVERT, 16),
            item("u1", UNRELATED, 15),
        ],
    )
    ids = env.ids()
    with env.engine.connect() as conn:
        assert match_stored(conn, "萧山").ids == {ids["f1"], ids["f2"], ids["ad"]}
        assert match_stored(conn, "萧山", exclusions=["广告"]).ids == {ids["f1"], ids["f2"]}
        # Simplified query, Traditional post; NEAR counts the characters between the terms
        # (8 in s1: "2号线早高峰发生", 3 in s2).
        assert match_stored(conn, "地铁 NEAR/10 故障").ids == {ids["s1"], ids["s2"]}
        assert match_stored(conn, "地铁 NEAR/6 故障").ids == {ids["s2"]}
        # A field-only query has nothing for the index: every post is read.
        result = match_stored(conn, "lang:zh")
        assert not result.narrowed and result.scanned == 6 and len(result.ids) == 6
        assert match_stored(conn, "地铁 AND NOT lang:zh").ids == set()
        with pytest.raises(QuerySyntaxError):
            match_stored(conn, "(萧山 AND")
    with write_transaction(env.engine) as conn:
        saved = create_topic(conn, "萧山", "萧山 AND 爆炸")
    with env.engine.connect() as conn:
        out = preview(conn, "萧山 -广告", saved=get_topic(conn, saved.id))
    assert out["count"] == 2
    assert sum(n for _, n in out["per_day"]) == 2
    assert out["per_day"][0][0] == "2024-06-01"
    assert out["diff"]["saved_count"] == 3 and out["diff"]["removed"] == 1
    assert out["diff"]["removed_samples"][0]["id"] == ids["ad"]
    assert "<mark>" in out["samples"][0]["snippet_html"]


def test_topic_store_validates_and_keeps_versions(env: Env) -> None:
    with write_transaction(env.engine) as conn:
        with pytest.raises(QuerySyntaxError) as err:
            create_topic(conn, "坏", "医院 AND (投诉 OR")
        assert err.value.position is not None
        topic = create_topic(conn, "医院", "医院 AND 投诉")
        with pytest.raises(TopicError, match="exists"):
            create_topic(conn, "医院", "医院")
        with pytest.raises(TopicError, match="no source"):
            create_topic(conn, "别的", "医院", source_ids=[999])
        changed = update_topic(conn, topic.id, query="(医院 OR 卫生院) AND 投诉", by="王五")
        renamed = update_topic(conn, topic.id, name="医疗投诉")
    assert changed.version == 2 and renamed.version == 2
    assert env.scalar(select(func.count()).select_from(TopicMatch)) == 0


def test_a_surge_on_a_topic_is_stored_as_a_spike_once(env: Env) -> None:
    from tingfeng.db.models import SpikeRecord

    add_topics(env)
    quiet = [
        item(f"q{i}", f"萧山区一厂房起火，消防到场处置（第{i}次通报）", i * 360) for i in range(12)
    ]
    surge_start = 12 * 360 + 60
    surge = [
        item(f"s{i}", f"萧山化工厂爆炸起火，现场视频第{i}条", surge_start + i) for i in range(30)
    ]
    later = [item("z", "萧山区厂房起火后续：火已扑灭", surge_start + 180)]
    ingestor = env.ingestor()
    for batch in (quiet, surge, later):
        ingestor.ingest(env.source, batch)
    with env.engine.connect() as conn:
        spikes = conn.execute(select(SpikeRecord.series, SpikeRecord.hour, SpikeRecord.count)).all()
    topic_spikes = [s for s in spikes if s.series.startswith("topic:")]
    assert len(topic_spikes) == 1
    surge_hour = (T0 + timedelta(minutes=surge_start)).replace(minute=0)
    assert topic_spikes[0].hour == surge_hour and topic_spikes[0].count == 30
    ingestor.ingest(env.source, [item("z2", "萧山区厂房起火：调查进行中", surge_start + 300)])
    with env.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(SpikeRecord)).scalar() == len(spikes)
