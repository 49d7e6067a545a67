"""One run of a source against a real loopback server: store, health, backoff, lease."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from tests.loopback import Reply
from tingfeng.collect.fetcher import Fetcher
from tingfeng.collect.health import health_report
from tingfeng.collect.runner import run_source
from tingfeng.collect.sources import add_source, find_source
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import FetchLog, Post, Source
from tingfeng.ingest.ingestor import Ingestor

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>县融媒体中心</title>
<item><title>县医院门诊楼改造完成</title><link>{base}/a/1.html</link><guid>a1</guid>
<description><![CDATA[<p>经过半年施工，县医院门诊楼改造工程完成，预计下周一起恢复门诊。改造后候诊区面积扩大一倍，新增自助挂号机二十台，方便群众就医。</p>]]></description>
<pubDate>Thu, 05 Mar 2026 08:00:00 +0800</pubDate></item>
<item><title>镇政府回应群众关于垃圾清运的投诉</title><link>{base}/a/2.html</link><guid>a2</guid>
<description><![CDATA[<p>针对近日网民反映的垃圾清运不及时问题，镇政府表示已增加清运车辆和班次，并公布了监督电话，欢迎群众继续监督。</p>]]></description>
<pubDate>Thu, 05 Mar 2026 09:30:00 +0800</pubDate></item>
</channel></rss>"""


def _setup(settings, loopback, etag: bool = True):  # type: ignore[no-untyped-def]
    engine = make_engine(settings.database_url)
    upgrade(engine)
    body = RSS.format(base=loopback.url("")).encode()
    headers = {"ETag": '"v1"'} if etag else {}

    def feed(req):  # type: ignore[no-untyped-def]
        if etag and req.headers.get("if-none-match") == '"v1"':
            return Reply(304, b"")
        return Reply(200, body, headers=headers, content_type="application/rss+xml")

    loopback.route("/feed.xml", feed)
    with write_transaction(engine) as conn:
        src = add_source(
            conn,
            name="县融媒",
            kind="feed",
            config={"url": loopback.url("/feed.xml"), "fetch_article": "never"},
        )
    return engine, src.id


def test_a_run_stores_posts_records_health_and_uses_conditional_get(settings, loopback) -> None:  # type: ignore[no-untyped-def]
    engine, sid = _setup(settings, loopback)
    ingestor = Ingestor(engine, settings)
    with Fetcher(settings) as fetcher:
        out = run_source(engine, ingestor, fetcher, sid)
        assert out.ok and out.stats.stored == 2
        second = run_source(engine, ingestor, fetcher, sid)
    assert second.ok and second.stats.stored == 0
    with engine.connect() as conn:
        titles = set(conn.execute(select(Post.title)).scalars())
        source = find_source(conn, sid)
        logs = conn.execute(select(FetchLog).order_by(FetchLog.id)).all()
        health = health_report(conn, [source], datetime.now(UTC))[0]
    assert titles == {"县医院门诊楼改造完成", "镇政府回应群众关于垃圾清运的投诉"}
    assert len(logs) == 2 and logs[0].items_stored == 2
    assert health.status == "healthy" and health.items_last_24h == 2 and health.last_error is None
    assert source.next_fetch_at > datetime.now(UTC) + timedelta(minutes=10)
    assert source.state, "the connector's cursor (validators) is saved with the source"
    # The second request was conditional and answered 304.
    assert loopback.requests[-1].headers.get("if-none-match") == '"v1"'


def test_a_failing_source_is_marked_with_a_plain_error_and_backs_off(settings, loopback) -> None:  # type: ignore[no-untyped-def]
    engine, sid = _setup(settings, loopback)
    loopback.route("/feed.xml", Reply(404, b"gone"))
    with Fetcher(settings) as fetcher:
        out = run_source(engine, Ingestor(engine, settings), fetcher, sid)
    assert not out.ok
    with engine.connect() as conn:
        source = find_source(conn, sid)
        health = health_report(conn, [source], datetime.now(UTC))[0]
    assert health.status == "failing" and "404" in (health.last_error or "")
    assert source.consecutive_failures == 1
    assert source.next_fetch_at > datetime.now(UTC) + timedelta(
        minutes=30
    )  # permanent: backs off harder


def test_a_leased_source_is_not_run_twice(settings, loopback) -> None:  # type: ignore[no-untyped-def]
    engine, sid = _setup(settings, loopback)
    with write_transaction(engine) as conn:
        conn.execute(
            update(Source)
            .where(Source.id == sid)
            .values(lease_until=datetime.now(UTC) + timedelta(minutes=5))
        )
    with Fetcher(settings) as fetcher:
        out = run_source(engine, Ingestor(engine, settings), fetcher, sid)
    assert not out.ran and loopback.hits("/feed.xml") == 0
