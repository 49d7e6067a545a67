"""Retention and pseudonymisation (tingfeng.privacy) on SQLite and a real PostgreSQL server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from typer.testing import CliRunner

from tingfeng import audit, privacy
from tingfeng.cases.service import open_case
from tingfeng.cli.main import app
from tingfeng.collect.items import RawItem
from tingfeng.collect.sources import add_source
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import Event, EventPost, Evidence, Post, PostReading
from tingfeng.ingest.ingestor import Ingestor, SourceRef
from tingfeng.search.service import count
from tingfeng.settings import Settings

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=100)


class Store:
    """A database with two sources and an ingestor for each age of post."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.engine = make_engine(url)
        upgrade(self.engine)
        self.settings = settings.model_copy(update={"database_url": url})
        with write_transaction(self.engine) as conn:
            self.news = add_source(conn, name="新闻", kind="lead", config={}).id
            self.forum = add_source(conn, name="论坛", kind="lead", config={}).id

    def ingest(self, source_id: int, at: datetime, items: list[RawItem]) -> list[int]:
        ingestor = Ingestor(self.engine, self.settings, now=lambda: at)
        stats = ingestor.ingest(SourceRef(source_id, "Asia/Shanghai"), items)
        assert stats.stored == len(items), stats
        return self.ids(f"source:{source_id}")[-len(items) :]

    def ids(self, _what: str = "") -> list[int]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(Post.id).order_by(Post.id)).scalars())

    def authors(self) -> dict[int, str | None]:
        with self.engine.connect() as conn:
            return dict(conn.execute(select(Post.id, Post.author)).all())


@pytest.fixture
def store(db_url: str, settings: Settings) -> Iterator[Store]:
    s = Store(db_url, settings)
    yield s
    s.engine.dispose()


def _items(prefix: str, n: int, at: datetime, author: str | None = None) -> list[RawItem]:
    return [
        RawItem(text=f"{prefix}第{i}条：县医院门诊楼漏雨", external_id=f"{prefix}{i}",
                published_at=at, author=author)
        for i in range(n)
    ]  # fmt: skip


def _event(conn: Any, post_ids: list[int]) -> int:
    event_id = conn.execute(
        insert(Event).values(title="县医院漏雨", posts=len(post_ids), first_post_id=post_ids[0])
    ).inserted_primary_key[0]
    conn.execute(insert(EventPost), [{"post_id": p, "event_id": event_id} for p in post_ids])
    return int(event_id)


def test_retention_deletes_only_old_posts_and_keeps_what_cases_need(store: Store) -> None:
    old = store.ingest(store.news, OLD, _items("旧", 8, OLD))
    recent = store.ingest(store.news, NOW, _items("新", 3, NOW))
    forum_old = store.ingest(store.forum, OLD, _items("坛", 2, OLD))
    # An archive imported today of posts published long ago is kept: it was collected today.
    imported = store.ingest(store.news, NOW, _items("档案", 2, OLD))
    with write_transaction(store.engine) as conn:
        case_post = open_case(conn, None, store.settings, title="漏雨", post_id=old[0])
        # An event a case in hand refers to keeps all its posts; an event without a case not.
        open_case(conn, None, store.settings, title="漏雨事件", event_id=_event(conn, old[1:3]))
        _event(conn, old[3:5])
        # Captured as evidence (of a case since deleted: the capture still points at it).
        conn.execute(
            insert(Evidence).values(post_id=old[5], number="原帖-001", url="https://x.cn/5")
        )
    assert case_post

    policy = privacy.Policy.of(
        {"retention_days": 30, "source_retention_days": {str(store.forum): 0}}
    )
    with store.engine.connect() as conn:
        found = privacy.preview(conn, policy, NOW)
        assert count(conn, "漏雨") == 15
    assert (found.delete, found.kept_for_cases, found.pseudonymize) == (4, 4, 0)

    result = privacy.apply(store.engine, store.settings, policy=policy, batch=2, trigger="test")
    assert (result.deleted, result.pseudonymized) == (4, 0)
    left = set(store.ids())
    assert left == {*old[:3], old[5], *recent, *forum_old, *imported}
    with store.engine.connect() as conn:
        # What was derived from the deleted posts went with them, the index included.
        assert conn.execute(select(func.count()).select_from(PostReading)).scalar() == len(left)
        assert conn.execute(select(func.count()).select_from(EventPost)).scalar() == 2
        assert count(conn, "漏雨") == len(left)
        assert privacy.preview(conn, policy, NOW).delete == 0
        entry = audit.entries(conn, subject="privacy", limit=1)[0]
        assert audit.verify(conn).ok
    assert entry["action"] == "privacy.apply"
    assert entry["detail"]["deleted"] == 4 and entry["detail"]["trigger"] == "test"


def test_pseudonymisation_is_stable_keeps_grouping_and_removes_names(store: Store) -> None:
    zhang = store.ingest(store.news, OLD, _items("张", 2, OLD, author="张三"))
    li = store.ingest(store.forum, OLD, _items("李", 1, OLD, author="李四"))
    fresh = store.ingest(store.news, NOW, _items("新", 1, NOW, author="张三"))
    nameless = store.ingest(store.news, OLD, _items("无", 1, OLD))
    policy = privacy.Policy.of({"pseudonymize_after_days": 30})
    with store.engine.connect() as conn:
        assert privacy.preview(conn, policy, NOW).pseudonymize == 3

    result = privacy.apply(store.engine, store.settings, policy=policy)
    assert (result.deleted, result.pseudonymized) == (0, 3)
    authors = store.authors()
    assert authors[zhang[0]] == authors[zhang[1]] != authors[li[0]]
    assert all(privacy.is_pseudonym(authors[i]) for i in (*zhang, *li))
    assert authors[zhang[0]].startswith("作者-") and len(authors[zhang[0]]) == 15
    assert authors[fresh[0]] == "张三" and authors[nameless[0]] is None
    with store.engine.connect() as conn:
        named = conn.execute(
            select(Post.id).where(Post.author == "张三", Post.published_at < NOW - timedelta(1))
        ).all()
    assert named == []

    # Stable: the same key gives the same pseudonym later, so the byline still groups.
    key = privacy.key_of(store.settings)
    assert privacy.pseudonym("张三", key) == authors[zhang[0]]
    assert privacy.pseudonym(" 张三 ", key) == authors[zhang[0]]
    assert privacy.pseudonym("张三", privacy.pseudonym_key(b"other")) != authors[zhang[0]]
    # Pseudonymising every post (0 days) takes the recent one too; a second pass does nothing.
    everything = privacy.Policy.of({"pseudonymize_after_days": 0})
    assert privacy.apply(store.engine, store.settings, policy=everything).pseudonymized == 1
    assert store.authors()[fresh[0]] == authors[zhang[0]]
    with store.engine.connect() as conn:
        assert conn.execute(select(Post.id).where(Post.author.like("%张三%"))).all() == []
    assert privacy.apply(store.engine, store.settings, policy=everything).pseudonymized == 0


def test_pseudonymising_rewrites_authors_in_event_profiles(store: Store) -> None:
    posts = store.ingest(store.news, OLD, _items("转", 2, OLD, author="王五"))
    with write_transaction(store.engine) as conn:
        event_id = _event(conn, posts)
        profile = {"spread": {"amplifiers": [{"key": str(posts[1]), "author": "王五"}]}}
        conn.execute(Event.__table__.update().values(profile=profile))
    privacy.apply(store.engine, store.settings,
                  policy=privacy.Policy.of({"pseudonymize_after_days": 1}))  # fmt: skip
    with store.engine.connect() as conn:
        profile = conn.execute(select(Event.profile).where(Event.id == event_id)).scalar()
    assert "王五" not in json.dumps(profile, ensure_ascii=False)
    assert profile["spread"]["amplifiers"][0]["author"] == store.authors()[posts[0]]


def test_new_posts_can_be_pseudonymised_as_they_are_stored(store: Store) -> None:
    store.settings = store.settings.model_copy(update={"pseudonymize_authors_at_ingest": True})
    ids = store.ingest(store.news, NOW, _items("入", 2, NOW, author="赵六"))
    expected = privacy.pseudonym("赵六", privacy.key_of(store.settings))
    assert {store.authors()[i] for i in ids} == {expected}


def test_the_daily_pass_goes_a_batch_per_tick_and_is_logged_once(store: Store) -> None:
    store.ingest(store.news, OLD, _items("旧", 5, OLD, author="张三"))
    with write_transaction(store.engine) as conn:
        privacy.save_policy(conn, None, {"retention_days": 30})
    results = []
    for minutes in range(4):
        with write_transaction(store.engine) as conn:
            results.append(
                privacy.tick(conn, store.settings, NOW + timedelta(minutes=minutes), batch=2)
            )
    assert [(r.deleted, r.finished) for r in results] == [
        (2, False), (4, False), (5, True), (0, False)
    ]  # fmt: skip
    with store.engine.connect() as conn:
        runs = [e for e in audit.entries(conn) if e["action"] == "privacy.apply"]
        assert privacy.last_run(conn)["state"] == "done"
    assert len(runs) == 1 and runs[0]["detail"]["deleted"] == 5
    assert runs[0]["detail"]["trigger"] == "daily" and runs[0]["actor"] == "system"
    # A day later the next pass starts.
    with write_transaction(store.engine) as conn:
        assert privacy.tick(conn, store.settings, NOW + timedelta(days=1, minutes=1)).finished


def test_a_policy_with_bad_values_is_refused_with_reasons() -> None:
    with pytest.raises(privacy.PrivacyError) as caught:
        privacy.Policy.of({"retention_days": 0, "pseudonymize_after_days": -1, "x": 1})
    assert len(caught.value.problems) == 3 and "retention_days" in str(caught.value)
    with pytest.raises(privacy.PrivacyError):
        privacy.Policy.of({"source_retention_days": {"3": -5}})


def test_cli_sets_the_policy_counts_and_applies(store: Store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store.ingest(store.news, OLD, _items("旧", 3, OLD, author="张三"))
    monkeypatch.setenv("TINGFENG_DATA_DIR", str(store.settings.data_dir))
    monkeypatch.setenv("TINGFENG_CONFIG", "/nonexistent.toml")
    runner = CliRunner()
    url = store.engine.url.render_as_string(hide_password=False)

    def cli(*args: str) -> str:
        result = runner.invoke(app, ["--db", url, "privacy", *args])
        assert result.exit_code == 0, result.stdout + result.stderr
        return result.stdout

    out = cli("set", "--retention-days", "60", "--pseudonymize-after", "0",
              "--source", f"{store.forum}=0")  # fmt: skip
    assert "retention: 60 days" in out and f"source {store.forum}: keep for ever" in out
    assert json.loads(cli("apply", "--dry-run", "--json")) == {
        "delete": 3, "pseudonymize": 3, "kept_for_cases": 0
    }  # fmt: skip
    assert json.loads(cli("apply", "--json")) == {"deleted": 3, "pseudonymized": 0}
    shown = json.loads(cli("show", "--json"))
    assert shown["last_run"]["deleted"] == 3 and shown["policy"]["retention_days"] == 60
    bad = runner.invoke(app, ["--db", url, "privacy", "set", "--retention-days", "0"])
    assert bad.exit_code == 2 and "retention_days" in bad.stderr
