"""Readings stored with their posts, reading filters in search, and re-analysis, on SQLite and a
real PostgreSQL server (the `db_url` fixture runs each test on both)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select

from tingfeng.analyze.categories import Taxonomy
from tingfeng.collect.items import RawItem
from tingfeng.collect.sources import add_source
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import Post, PostLabel, PostReading
from tingfeng.ingest.ingestor import Ingestor, SourceRef
from tingfeng.ingest.prepare import segmenter_for
from tingfeng.ingest.readings import (
    current_taxonomy,
    reader_for,
    readings_of,
    reanalyze,
    save_taxonomy,
)
from tingfeng.retention import delete_posts
from tingfeng.search.service import SearchFilters, count, matching_ids
from tingfeng.settings import Settings

# Posts whose readings are clear-cut (checked against the built-in models), by external id.
POSTS = {
    "complaint": "这家饭店太差劲了，服务员态度恶劣，菜又贵又难吃，再也不来了！",
    "admission": "今天收到录取通知书，太开心了，感谢老师和家人！",
    "fire": "浙江杭州萧山区一厂房发生火灾，消防救援人员正在现场灭火，暂无人员伤亡。",
    "rumour": "网传某地自来水被投毒，紧急扩散！转发告诉家人千万不要喝自来水！",
    "statistics": "国家统计局发布数据显示，一季度国内生产总值同比增长5.3%。",
    "westlake": "今天去杭州西湖玩了，风景真美，心情特别好",
    "traffic": "广州天河区交通拥堵严重，上班路上堵了两个小时",
}
# One query that finds every post above, so that filters alone decide the results.
ALL = "饭店 OR 录取 OR 火灾 OR 自来水 OR 统计局 OR 西湖 OR 拥堵"


def items(names: list[str] | None = None, dated: bool = False) -> list[RawItem]:
    out = []
    for n, name in enumerate(names or list(POSTS)):
        # With `dated`, post n is published on day n+1 of March 2024.
        when = datetime(2024, 3, n + 1, 12, 0, tzinfo=UTC) if dated else None
        out.append(RawItem(text=POSTS[name], external_id=name, published_at=when))
    return out


@dataclass
class Store:
    engine: Engine
    settings: Settings
    source: SourceRef

    def ingestor(self, **changes: object) -> Ingestor:
        return Ingestor(self.engine, self.settings.model_copy(update=changes))

    def reader(self):  # type: ignore[no-untyped-def]
        return reader_for(self.settings, self.engine, segmenter_for(self.settings))

    def ids(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {ext: pid for ext, pid in conn.execute(select(Post.external_id, Post.id))}

    def count(self, table: type) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def labels(self, post_id: int) -> set[tuple[str, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(PostLabel.kind, PostLabel.value).where(PostLabel.post_id == post_id)
            )
            return {(kind, value) for kind, value in rows}

    def find(self, query: str = ALL, **filters: object) -> set[str]:
        """External ids of the posts matching `query` with `filters` (count must agree)."""
        by_id = {pid: ext for ext, pid in self.ids().items()}
        f = SearchFilters(**filters)  # type: ignore[arg-type]
        with self.engine.connect() as conn:
            found = matching_ids(conn, query, f)
            assert count(conn, query, f) == len(found)
        return {by_id[i] for i in found}


@pytest.fixture
def store(db_url: str, settings: Settings) -> Iterator[Store]:
    engine = make_engine(db_url)
    upgrade(engine)
    with write_transaction(engine) as conn:
        source = add_source(conn, name="t", kind="lead", config={}, timezone="Asia/Shanghai")
    yield Store(
        engine,
        settings.model_copy(update={"database_url": db_url}),
        SourceRef(source.id, "Asia/Shanghai"),
    )
    engine.dispose()


def test_ingest_stores_one_reading_per_post_and_none_for_duplicates(store: Store) -> None:
    ingestor = store.ingestor()
    stats = ingestor.ingest(store.source, items())
    assert stats.stored == len(POSTS)
    assert store.count(PostReading) == len(POSTS)
    ids = store.ids()
    with store.engine.connect() as conn:
        readings = readings_of(conn, list(ids.values()))
    assert set(readings) == set(ids.values())
    by_name = {name: readings[pid] for name, pid in ids.items()}
    assert by_name["complaint"]["polarity"] == "negative"
    assert by_name["complaint"]["polarity_score"] < 0
    assert by_name["admission"]["polarity"] == "positive"
    assert by_name["admission"]["emotion"] == "happy"
    assert by_name["rumour"]["needs_verification"] is True
    assert by_name["statistics"]["needs_verification"] is False
    assert all(r["version"] == ingestor.preparer.reader.version for r in readings.values())  # type: ignore[union-attr]
    fire = by_name["fire"]
    assert [c["slug"] for c in fire["categories"]] == ["public-safety"]
    assert fire["regions"][0]["code"] == "330109"
    assert fire["keywords"] and isinstance(fire["keywords"][0], list)
    assert store.labels(ids["fire"]) == {
        ("category", "public-safety"),
        ("region", "330000"),
        ("region", "330100"),
        ("region", "330109"),
    }
    assert store.labels(ids["statistics"]) == set()  # no place, no category

    # Duplicates are neither stored again nor re-read.
    with store.engine.connect() as conn:
        before = dict(conn.execute(select(PostReading.post_id, PostReading.analysed_at)).all())
    again = ingestor.ingest(
        store.source, [*items(), RawItem(text=POSTS["fire"], external_id="fire")]
    )
    assert (again.stored, again.duplicates) == (0, len(POSTS) + 1)
    with store.engine.connect() as conn:
        after = dict(conn.execute(select(PostReading.post_id, PostReading.analysed_at)).all())
    assert after == before
    assert store.count(PostLabel) == sum(len(store.labels(pid)) for pid in ids.values())


def test_reading_filters_match_exactly_and_deleted_posts_leave_nothing(store: Store) -> None:
    store.ingestor().ingest(store.source, items())
    assert store.find() == set(POSTS)
    assert store.find(polarities=["positive"]) == {"admission", "westlake"}
    assert store.find(polarities=["negative"]) >= {"complaint", "rumour"}
    assert store.find(polarities=["negative"]).isdisjoint({"admission", "westlake"})
    assert store.find(emotions=["happy"]) == {"admission", "westlake"}
    assert store.find(categories=["public-safety"]) == {"fire"}
    assert store.find(categories=["education"]) == {"admission"}
    assert store.find(categories=["public-safety", "education"]) == {"fire", "admission"}
    assert store.find(regions=["440106"]) == {"traffic"}
    assert store.find(regions=["330109"]) == {"fire"}
    # A province or a city matches the posts of its counties (labels hold the ancestors).
    assert store.find(regions=["330000"]) == {"fire", "westlake"}
    assert store.find(regions=["330100"]) == {"fire", "westlake"}
    assert store.find(regions=["330000", "440000"]) == {"fire", "westlake", "traffic"}
    assert store.find(regions=["110000"]) == set()
    claims = "饭店 OR 自来水 OR 统计局"
    assert store.find(claims, needs_verification=True) == {"rumour"}
    assert store.find(claims, needs_verification=False) == {"complaint", "statistics"}
    # Different filters all apply; the query still applies too.
    assert store.find(polarities=["positive"], regions=["330000"]) == {"westlake"}
    assert store.find(polarities=["negative"], categories=["education"]) == set()
    assert store.find("西湖 OR 火灾", regions=["330100"]) == {"fire", "westlake"}
    assert store.find("火灾", regions=["330100"], emotions=["happy"]) == set()

    # Deleted posts take their readings and labels with them.
    ids = store.ids()
    with write_transaction(store.engine) as conn:
        assert delete_posts(conn, [ids["fire"], ids["admission"]]) == 2
    assert store.count(PostReading) == len(POSTS) - 2
    assert store.labels(ids["fire"]) == set() and store.labels(ids["admission"]) == set()
    with store.engine.connect() as conn:
        assert readings_of(conn, [ids["fire"], ids["admission"]]) == {}
        orphans = conn.execute(
            select(func.count())
            .select_from(PostLabel)
            .where(PostLabel.post_id.not_in(select(Post.id)))
        ).scalar_one()
    assert orphans == 0
    assert store.find(regions=["330000"]) == {"westlake"}
    assert store.find(categories=["public-safety"]) == set()


class Interrupted(Exception):
    pass


def test_without_analysis_on_ingest_reanalyze_fills_in_resumably_and_idempotently(
    store: Store,
) -> None:
    stats = store.ingestor(analyze_on_ingest=False).ingest(store.source, items())
    assert stats.stored == len(POSTS)
    assert store.count(PostReading) == 0 and store.count(PostLabel) == 0
    assert store.find(polarities=["positive"]) == set()  # nothing read yet, nothing matches
    reader = store.reader()

    def stop(stats: object) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):  # stopped after its first batch, as by Ctrl-C
        reanalyze(store.engine, reader, batch_size=2, on_batch=stop)
    assert store.count(PostReading) == 2  # that batch was committed
    rest = reanalyze(store.engine, reader, batch_size=3)
    assert (rest.examined, rest.analysed) == (len(POSTS), len(POSTS) - 2)
    assert store.count(PostReading) == len(POSTS)
    assert store.find(polarities=["positive"]) == {"admission", "westlake"}
    assert store.find(regions=["330000"]) == {"fire", "westlake"}
    again = reanalyze(store.engine, reader, batch_size=3)
    assert (again.examined, again.analysed) == (len(POSTS), 0)
    # --all redoes everything, and still leaves one reading per post.
    everything = reanalyze(store.engine, reader, everything=True)
    assert everything.analysed == len(POSTS)
    assert store.count(PostReading) == len(POSTS)


def test_a_new_category_makes_reanalyze_reread_everything(store: Store) -> None:
    store.ingestor().ingest(store.source, items())
    assert store.find(categories=["transport"]) == set()
    with write_transaction(store.engine) as conn:
        wider = current_taxonomy(conn).add_category(
            {
                "slug": "transport",
                "name_zh": "交通出行",
                "name_en": "Transport",
                "keywords": {"交通拥堵": 2.0, "堵车": 2.0},
            }
        )
        save_taxonomy(conn, wider, "add transport")
    reader = store.reader()
    assert "transport" in reader.categories.taxonomy.slugs  # reader_for reads the saved one
    stats = reanalyze(store.engine, reader)
    assert stats.analysed == len(POSTS)
    assert store.find(categories=["transport"]) == {"traffic"}
    assert ("category", "transport") in store.labels(store.ids()["traffic"])
    with store.engine.connect() as conn:
        versions = set(conn.execute(select(PostReading.version)).scalars())
    assert versions == {reader.version}
    assert reanalyze(store.engine, reader).analysed == 0


def test_reanalyze_since_reads_only_posts_published_since(store: Store) -> None:
    store.ingestor(analyze_on_ingest=False).ingest(store.source, items(dated=True))
    # Post n is published on March n+1: five of the seven are on or after March 3.
    stats = reanalyze(store.engine, store.reader(), since=datetime(2024, 3, 3, tzinfo=UTC))
    assert (stats.examined, stats.analysed) == (5, 5)
    ids = store.ids()
    with store.engine.connect() as conn:
        read = set(readings_of(conn, list(ids.values())))
    assert read == {ids[name] for name in list(POSTS)[2:]}


def test_an_ingestors_taxonomy_watcher_picks_up_a_saved_taxonomy(store: Store) -> None:
    ingestor = store.ingestor()
    assert ingestor.watcher is not None and ingestor.preparer.reader is not None
    before = ingestor.preparer.reader.version
    with write_transaction(store.engine) as conn:
        save_taxonomy(
            conn,
            Taxonomy.default().add_category(
                {
                    "slug": "transport",
                    "name_zh": "交通出行",
                    "name_en": "Transport",
                    "keywords": {"交通拥堵": 2.0, "堵车": 2.0},
                }
            ),
        )
    ingestor.watcher.check()  # checked every 30 s: too soon, nothing changes yet
    assert ingestor.preparer.reader.version == before
    ingestor.watcher.check(force=True)
    assert ingestor.preparer.reader.version != before
    ingestor.ingest(store.source, items(["traffic", "fire"]))
    assert store.find(categories=["transport"]) == {"traffic"}
    assert store.find(categories=["public-safety"]) == {"fire"}


def test_odd_posts_are_stored_with_explicit_unknowns(store: Store) -> None:
    odd = {
        "emoji": "😀😂🔥👍",
        # No NUL: posts.text_original keeps it and PostgreSQL refuses NUL in text columns.
        "controls": "投诉\x01物业\x07不作为，\x1b气死了\x7f",
        # Plainly pleased: milder praise ("traffic flows so much better", P(positive) 0.90)
        # sits inside the English model's neutral band (docs/analysis.md).
        "english": "The new bridge is great, we love it!",
        "long": "医院排队三个小时没人管，服务太差了。" * 6000,
    }
    stats = store.ingestor().ingest(
        store.source, [RawItem(text=text, external_id=name) for name, text in odd.items()]
    )
    assert stats.errors == 0 and stats.stored == len(odd)
    ids = store.ids()
    with store.engine.connect() as conn:
        readings = {name: readings_of(conn, [pid])[pid] for name, pid in ids.items()}
    assert readings["emoji"]["polarity"] == "unknown"
    assert readings["emoji"]["emotion"] == "unknown"
    assert readings["emoji"]["needs_verification"] is None
    assert readings["english"]["polarity"] == "positive"
    assert readings["english"]["emotion"] == "unknown"
    assert readings["english"]["needs_verification"] is None
    assert readings["controls"]["polarity"] == "negative"
    assert readings["long"]["polarity"] == "negative"
    assert all(not r["problems"] for r in readings.values())
