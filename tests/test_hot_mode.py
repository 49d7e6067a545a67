"""Hot mode while an event is hot: a level rise or a spike heats the polled sources of its posts."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from tingfeng.alerts.signals import level_listener
from tingfeng.collect import hot_mode
from tingfeng.collect.scheduler import current_interval
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import AuditEntry, Event, EventPost, Post, Source
from tingfeng.settings import Settings

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture
def db(db_url: str, tmp_path: Any) -> Any:  # type: ignore[no-untyped-def]
    engine = make_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _source(conn: Any, name: str, kind: str = "feed", **values: Any) -> int:
    return int(
        conn.execute(
            insert(Source).values(
                name=name, kind=kind, config={}, next_fetch_at=NOW + timedelta(minutes=10),
                **{"interval_s": 900, "hot_interval_s": 60, **values},
            )
        ).inserted_primary_key[0]
    )  # fmt: skip


def _event(conn: Any, source_ids: list[int], level: str = "general") -> int:
    eid = int(
        conn.execute(insert(Event).values(title="化工厂爆炸", level=level)).inserted_primary_key[0]
    )
    for n, sid in enumerate(source_ids):
        pid = conn.execute(
            insert(Post).values(
                uid=hashlib.md5(f"{eid}-{n}".encode()).hexdigest(), source_id=sid,
                content_hash=f"h{eid}-{n}", text_clean=f"化工厂爆炸 {n}", published_at=NOW,
            )
        ).inserted_primary_key[0]  # fmt: skip
        conn.execute(insert(EventPost).values(post_id=pid, event_id=eid))
    return eid


def _sources(engine: Any) -> dict[str, Any]:
    with engine.connect() as conn:
        return {row.name: row for row in conn.execute(select(Source.__table__)).all()}


def test_a_level_rise_heats_the_polled_sources_of_the_event(db: Any, tmp_path: Any) -> None:
    settings = Settings(database_url="sqlite://", data_dir=tmp_path)  # hot_mode_level serious
    with write_transaction(db) as conn:
        feed = _source(conn, "县融媒")
        board = _source(conn, "本地论坛", kind="board")
        push = _source(conn, "对接平台", kind="push")
        off = _source(conn, "停用的源", enabled=False)
        elsewhere = _source(conn, "无关的源")
        eid = _event(conn, [feed, feed, board, push, off])
        _event(conn, [elsewhere])
    with write_transaction(db) as conn:
        # Rising within "general", or staying at a level, changes nothing.
        assert hot_mode.on_level(conn, settings, eid, None, "general", NOW) == []
        assert hot_mode.on_level(conn, settings, eid, "serious", "serious", NOW) == []
        switched = hot_mode.on_level(conn, settings, eid, "general", "serious", NOW)
    assert sorted(switched) == sorted([feed, board])
    rows = _sources(db)
    for name in ("县融媒", "本地论坛"):
        source = rows[name]
        until = (
            source.hot_until.replace(tzinfo=UTC)
            if source.hot_until.tzinfo is None
            else source.hot_until
        )
        assert until == NOW + timedelta(minutes=120)
        # Due at once, then every minute (the hot interval) while hot mode lasts.
        assert source.next_fetch_at.replace(tzinfo=UTC) == NOW
        assert current_interval(source, NOW + timedelta(minutes=30)) == 60
    for name in ("对接平台", "停用的源", "无关的源"):
        assert rows[name].hot_until is None  # pushed, disabled, or not the event's
    with db.connect() as conn:
        audited = conn.execute(
            select(AuditEntry.action, AuditEntry.subject).where(
                AuditEntry.action == "settings.source_hot"
            )
        ).all()
    assert sorted(subject for _, subject in audited) == sorted(
        [f"source:{feed}", f"source:{board}"]
    )


def test_a_source_hot_for_longer_keeps_its_end_and_zero_minutes_turns_it_off(
    db: Any, tmp_path: Any
) -> None:
    settings = Settings(database_url="sqlite://", data_dir=tmp_path, hot_mode_level="major")
    later = NOW + timedelta(hours=10)
    with write_transaction(db) as conn:
        long_hot = _source(conn, "已在热点模式", hot_until=later)
        feed = _source(conn, "县融媒")
        # Polled every 2 s anyway (the demo's replay): hot mode would change nothing.
        fast = _source(conn, "回放", kind="replay", interval_s=2, hot_interval_s=2)
        eid = _event(conn, [long_hot, feed, fast])
    with write_transaction(db) as conn:
        assert hot_mode.on_level(conn, settings, eid, "general", "serious", NOW) == []  # < major
        assert hot_mode.on_level(conn, settings, eid, "serious", "critical", NOW) == [feed]
    assert _sources(db)["已在热点模式"].hot_until.replace(tzinfo=UTC) == later
    off = Settings(database_url="sqlite://", data_dir=tmp_path, hot_mode_minutes=0)
    with write_transaction(db) as conn:
        other = _event(conn, [_source(conn, "另一个源")])
        assert hot_mode.on_level(conn, off, other, "general", "critical", NOW) == []


def test_spikes_of_events_heat_their_sources(db: Any, tmp_path: Any) -> None:
    settings = Settings(database_url="sqlite://", data_dir=tmp_path)
    with write_transaction(db) as conn:
        feed = _source(conn, "县融媒")
        eid = _event(conn, [feed])
    with write_transaction(db) as conn:
        switched = hot_mode.on_spikes(conn, settings, ["topic:3", f"event:{eid}", "event:x"], NOW)
    assert switched == [feed]


def test_the_level_listener_heats_sources_as_it_raises_alerts(db: Any, tmp_path: Any) -> None:
    settings = Settings(database_url=str(db.url), data_dir=tmp_path)
    on_level = level_listener(settings, now=lambda: NOW)
    with write_transaction(db) as conn:
        feed = _source(conn, "县融媒")
        eid = _event(conn, [feed], level="major")
    with write_transaction(db) as conn:
        on_level(conn, eid, "general", "major")
    assert _sources(db)["县融媒"].hot_until is not None


def test_hot_mode_level_must_be_a_level(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="hot_mode_level"):
        Settings(database_url="sqlite://", data_dir=tmp_path, hot_mode_level="较大")
