"""Storage and search on SQLite and a real PostgreSQL server (the `db_url` fixture runs both)."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tingfeng.collect.items import ItemError, RawItem
from tingfeng.collect.sources import add_source
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import Post
from tingfeng.ingest.ingestor import Ingestor, SourceRef
from tingfeng.search.query import QueryError
from tingfeng.search.service import count, matching_ids, search
from tingfeng.settings import Settings

CED = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "rumor" / "ced" / "cascades.jsonl.gz"
)


@pytest.fixture
def store(db_url: str, settings: Settings):
    engine = make_engine(db_url)
    upgrade(engine)
    s = settings.model_copy(update={"database_url": db_url})
    with write_transaction(engine) as conn:
        source = add_source(conn, name="t", kind="lead", config={}, timezone="Asia/Shanghai")
    yield engine, Ingestor(engine, s), SourceRef(source.id, "Asia/Shanghai")
    engine.dispose()


def _posts(engine) -> list[Post]:  # type: ignore[no-untyped-def]
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        return list(session.execute(select(Post).order_by(Post.id)).scalars())


def test_reingesting_never_creates_a_second_row(store) -> None:  # type: ignore[no-untyped-def]
    engine, ingestor, source = store
    items = [
        RawItem(text="县医院收费不合理，群众反映强烈", platform="weibo", external_id="1"),
        RawItem(text="另一条", url="https://news.example.cn/a/1.html?utm_source=x"),
        RawItem(text="没有编号也没有网址的帖子"),
    ]
    first = ingestor.ingest(source, items)
    assert (first.stored, first.duplicates) == (3, 0)
    again = ingestor.ingest(
        source, [*items, RawItem(text="另一条", url="https://NEWS.example.cn/a/1.html")]
    )
    assert (again.stored, again.duplicates) == (0, 4)
    assert len(_posts(engine)) == 3


def test_times_are_utc_and_naive_times_use_the_source_zone(store) -> None:  # type: ignore[no-untyped-def]
    engine, ingestor, source = store
    ingestor.ingest(
        source,
        [
            RawItem(text="本地时间", external_id="a", published_at=datetime(2024, 3, 5, 8, 0)),
            RawItem(
                text="带时区", external_id="b", published_at=datetime(2024, 3, 5, 8, 0, tzinfo=UTC)
            ),
        ],
    )
    by_ext = {p.external_id: p.published_at for p in _posts(engine)}
    assert by_ext["a"] == datetime(2024, 3, 5, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
    assert by_ext["b"] == datetime(2024, 3, 5, 8, 0, tzinfo=UTC)


def test_original_clean_normalised_and_tokens_are_kept(store) -> None:  # type: ignore[no-untyped-def]
    engine, ingestor, source = store
    ingestor.ingest(
        source,
        [RawItem(html="<p>網絡輿情<script>alert(1)</script>監測　ＡＢＣ</p>", external_id="h")],
    )
    post = _posts(engine)[0]
    assert "<script>" in (post.html or "")
    assert "alert" not in post.text_clean and "網絡輿情" in post.text_clean
    assert "网络舆情" in post.text_norm and "abc" in post.text_norm
    assert post.tokens and post.lang == "zh"


def test_bad_items_are_counted_and_good_ones_stored(store) -> None:  # type: ignore[no-untyped-def]
    _, ingestor, source = store
    stats = ingestor.ingest(
        source,
        [
            RawItem(text="好的一条", external_id="ok"),
            ItemError("line 2", "invalid JSON"),
            RawItem(text="   ", external_id="empty"),
        ],
    )
    assert (stats.read, stats.stored, stats.errors) == (3, 1, 2)
    assert any("line 2" in s for s in stats.error_samples)


def test_reposts_link_to_their_parent_even_when_stored_first(store) -> None:  # type: ignore[no-untyped-def]
    engine, ingestor, source = store
    child = RawItem(
        text="转发//@a:原帖", platform="weibo", external_id="c", kind="repost", reposts_of="p"
    )
    ingestor.ingest(source, [child])
    ingestor.ingest(source, [RawItem(text="原帖内容", platform="weibo", external_id="p")])
    by_ext = {p.external_id: p for p in _posts(engine)}
    assert by_ext["c"].reposts_of_id == by_ext["p"].id


def test_exact_and_near_duplicates_share_the_first_posts_group(store) -> None:  # type: ignore[no-untyped-def]
    engine, ingestor, source = store
    original = "某县人民医院被曝乱收费，患者住院三天被收取上万元检查费，院方回应称正在核查"
    ingestor.ingest(source, [RawItem(text=original, external_id="1")])
    ingestor.ingest(
        source,
        [
            RawItem(text=original + " http://t.cn/abc", external_id="2"),  # exact after stripping
            RawItem(text=original.replace("上万元", "一万多元"), external_id="3"),  # near
            RawItem(text="今天天气晴朗，适合出门散步，公园里人很多，大家都很开心", external_id="4"),
        ],
    )
    by_ext = {p.external_id: p for p in _posts(engine)}
    first = by_ext["1"].id
    assert by_ext["1"].dup_group == first and by_ext["1"].dup_kind == "original"
    assert (by_ext["2"].dup_group, by_ext["2"].dup_kind) == (first, "exact")
    assert (by_ext["3"].dup_group, by_ext["3"].dup_kind) == (first, "near")
    assert by_ext["4"].dup_group == by_ext["4"].id


def _ced_items(limit: int):  # type: ignore[no-untyped-def]
    from tingfeng.collect.connectors.imports import read_items

    return list(islice(read_items(CED, format="ced"), limit))


def test_search_finds_every_substring_like_a_scan(store) -> None:  # type: ignore[no-untyped-def]
    """Recall against a brute-force scan, for 1-4 character strings and multi-term queries."""
    engine, ingestor, source = store
    ingestor.ingest(source, _ced_items(3000))
    with engine.connect() as conn:
        rows = conn.execute(select(Post.id, Post.title_norm, Post.text_norm)).all()
        runs = [
            m.group(0) for _, _, t in rows[:400] for m in re.finditer(r"[\u4e00-\u9fff]{4,}", t)
        ]
        queries = (
            [r[:2] for r in runs[:25]]
            + [r[1:5] for r in runs[25:50]]
            + [r[:1] for r in runs[50:55]]
        )
        queries += [f"{a[:2]} {b[:2]}" for a, b in zip(runs[55:65], runs[65:75], strict=True)]
        for q in queries:
            expected = {
                pid for pid, ti, t in rows if all(term in t or term in ti for term in q.split())
            }
            assert matching_ids(conn, q) == expected, q
            assert count(conn, q) == len(expected), q


def test_search_results_are_identical_on_both_databases(
    db_url: str, settings: Settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """The same data and queries on this database and on a SQLite reference give the same ids."""
    results = {}
    for name, url in (("this", db_url), ("ref", f"sqlite:///{tmp_path / 'ref.db'}")):
        engine = make_engine(url)
        upgrade(engine)
        with write_transaction(engine) as conn:
            sid = add_source(conn, name="t", kind="lead", config={}).id
        Ingestor(engine, settings.model_copy(update={"database_url": url})).ingest(
            SourceRef(sid, None), _ced_items(800)
        )
        with engine.connect() as conn:
            uid_of = dict(conn.execute(select(Post.id, Post.uid)).all())
            results[name] = {
                q: sorted(uid_of[i] for i in matching_ids(conn, q))
                for q in (
                    "转发",
                    "谣言",
                    "微博 转发",
                    "中国 -转发",
                    "医",
                    "(辟谣 | 真相) 微博",
                    "转发微博",
                )
            }
        engine.dispose()
    assert results["this"] == results["ref"]
    assert any(results["this"].values())


def test_search_page_highlights_and_sorts_newest_first(store) -> None:  # type: ignore[no-untyped-def]
    engine, ingestor, source = store
    ingestor.ingest(
        source,
        [
            RawItem(
                text="旧帖：医院收费问题",
                external_id="o",
                published_at=datetime(2024, 1, 1, tzinfo=UTC),
            ),
            RawItem(
                text="新帖：醫院收費<b>問題</b>",
                external_id="n",
                published_at=datetime(2024, 6, 1, tzinfo=UTC),
            ),
            RawItem(
                text="无关的帖子", external_id="x", published_at=datetime(2024, 7, 1, tzinfo=UTC)
            ),
        ],
    )
    with engine.connect() as conn:
        page = search(conn, "医院收费", sort="newest")
    assert [h.published_at.year * 100 + h.published_at.month for h in page.hits] == [202406, 202401]
    # Traditional text is found by the Simplified query and marked on its original characters.
    assert "<mark>醫院收費</mark>" in page.hits[0].snippet_html
    assert "<b>" not in page.hits[0].snippet_html


def test_english_terms_match_whole_words(store) -> None:  # type: ignore[no-untyped-def]
    engine, ingestor, source = store
    ingestor.ingest(
        source,
        [
            RawItem(text="The art of listening", external_id="1"),
            RawItem(text="A party in Hong Kong", external_id="2"),
        ],
    )
    with engine.connect() as conn:
        assert count(conn, "art") == 1
        assert count(conn, '"hong kong"') == 1
        assert count(conn, "ART OR party") == 2


def test_bad_queries_raise_clear_errors(store) -> None:  # type: ignore[no-untyped-def]
    engine, _, _ = store
    with engine.connect() as conn:
        for bad, fragment in (
            ("-广告", "NOT needs"),
            ("a OR -b", "OR cannot"),
            ("!!!", "no letters"),
        ):
            with pytest.raises(QueryError, match=fragment):
                count(conn, bad)


def test_ced_fixture_file_is_present() -> None:
    assert CED.exists(), "the shared CED data set is expected at ../shared/data/rumor/ced"
    with gzip.open(CED, "rt", encoding="utf-8") as fh:
        assert "reposts" in json.loads(fh.readline())


def test_post_count_helper(store) -> None:  # type: ignore[no-untyped-def]
    engine, ingestor, source = store
    ingestor.ingest(
        source, [RawItem(text=f"第{i}条", external_id=str(i)) for i in range(2500)], batch_size=1000
    )
    with engine.connect() as conn:
        assert conn.execute(select(func.count(Post.id))).scalar_one() == 2500


def test_newest_first_follows_publication_time_not_arrival(store) -> None:  # type: ignore[no-untyped-def]
    """Posts imported out of order still come newest first, and time filters are exact."""
    engine, ingestor, source = store
    days = [5, 1, 9, 3, 7]  # arrival order differs from time order
    ingestor.ingest(
        source,
        [
            RawItem(
                text=f"供暖问题第{d}天",
                external_id=str(d),
                published_at=datetime(2026, 11, d, 12, tzinfo=UTC),
            )
            for d in days
        ],
    )
    from tingfeng.search.service import SearchFilters

    with engine.connect() as conn:
        newest = [h.published_at.day for h in search(conn, "供暖", sort="newest").hits]
        oldest = [h.published_at.day for h in search(conn, "供暖", sort="oldest").hits]
        window = SearchFilters(
            since=datetime(2026, 11, 3, 12, tzinfo=UTC), until=datetime(2026, 11, 7, 12, tzinfo=UTC)
        )
        filtered = [h.published_at.day for h in search(conn, "供暖", window).hits]
        assert count(conn, "供暖", window) == 2
        paged = [h.published_at.day for h in search(conn, "供暖", limit=2, offset=2).hits]
    assert newest == [9, 7, 5, 3, 1] and oldest == [1, 3, 5, 7, 9]
    assert filtered == [5, 3]  # since is inclusive, until exclusive
    assert paged == [5, 3]


def test_deleting_posts_removes_them_from_search(store) -> None:  # type: ignore[no-untyped-def]
    from tingfeng.retention import delete_posts

    engine, ingestor, source = store
    ingestor.ingest(
        source,
        [
            RawItem(text="要删除的供暖帖", external_id="d"),
            RawItem(text="保留的供暖帖", external_id="k"),
        ],
    )
    with write_transaction(engine) as conn:
        doomed = [p.id for p in _posts(engine) if p.external_id == "d"]
        assert delete_posts(conn, doomed) == 1
    with engine.connect() as conn:
        assert [h.id for h in search(conn, "供暖").hits] == [p.id for p in _posts(engine)]
        assert count(conn, "删除") == 0


def test_awkward_values_are_stored_alike_on_both_databases(
    db_url: str, settings: Settings, tmp_path: Path
) -> None:
    """PostgreSQL stores posts, readings and the search index with COPY (tingfeng.db.bulk):
    tabs, newlines, backslashes, a literal \\N, quotes, emoji and nested JSON must come back as
    SQLite (plain INSERTs) gives them back."""
    text = "供暖\t不热\n第二行 \\ 反斜杠 \\N 不是空值 \"引号\" '单引号' 😀 ｜全角｜"
    items = [
        RawItem(
            text=text,
            title="标题\\t\t制表",
            platform="weibo",
            external_id="a\\b\tc",
            author="网友\\N",
            url="https://example.cn/p?q=a%09b&x=\\",
            published_at=datetime(2026, 11, 2, 8, 30, 15, 123456, tzinfo=UTC),
            reposts=3,
            views=2**40,
            extra={"标签": ["供暖", "投诉"], "嵌套": {"a": 1.5, "b": None, "c": "\\N\t"}},
        ),
        RawItem(
            text="只有正文",
            platform="weibo",
            external_id="2",
            published_at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
        ),
    ]
    columns = ("uid", "kind", "platform", "external_id", "url", "title", "text_original",
               "html", "text_clean", "title_norm", "text_norm", "tokens", "lang", "content_hash",
               "dup_kind", "author", "published_at", "reposts", "comments", "views", "extra")  # fmt: skip
    stored = {}
    for name, url in (("this", db_url), ("ref", f"sqlite:///{tmp_path / 'ref.db'}")):
        engine = make_engine(url)
        upgrade(engine)
        s = settings.model_copy(update={"database_url": url})
        with write_transaction(engine) as conn:
            source = add_source(conn, name="t", kind="lead", config={}, timezone="Asia/Shanghai")
        assert Ingestor(engine, s).ingest(SourceRef(source.id, "Asia/Shanghai"), items).stored == 2
        rows = _posts(engine)
        stored[name] = [{c: getattr(p, c) for c in columns} for p in rows]
        with engine.connect() as conn:
            stored[name + ":search"] = sorted(matching_ids(conn, "反斜杠"))
            stored[name + ":found"] = [p.id for p in rows if p.text_original == text]
        engine.dispose()
    assert stored["this"] == stored["ref"]
    assert stored["this"][0]["text_original"] == text
    assert stored["this"][0]["extra"]["嵌套"]["c"] == "\\N\t"
    assert stored["this:search"] == stored["this:found"] and stored["this:search"]


def test_a_post_stored_meanwhile_by_another_worker_is_skipped(
    fresh_postgres_db: str, settings: Settings
) -> None:
    """Two PostgreSQL workers storing the same post at once: the second one's insert skips it
    (ON CONFLICT after COPY into the staging table). SQLite has one writer at a time."""
    from tingfeng.db import posts as post_store

    engine = make_engine(fresh_postgres_db)
    upgrade(engine)
    with write_transaction(engine) as conn:
        src = add_source(conn, name="t", kind="lead", config={}, timezone="Asia/Shanghai")
    source = SourceRef(src.id, "Asia/Shanghai")
    ingestor = Ingestor(engine, settings.model_copy(update={"database_url": fresh_postgres_db}))
    item = RawItem(text="同一条帖子，两个进程同时收到。", platform="weibo", external_id="same")
    assert ingestor.ingest(source, [item]).stored == 1
    (first,) = _posts(engine)
    with write_transaction(engine) as conn:
        row = {c.name: getattr(first, c.name) for c in Post.__table__.columns}
        other = dict(row, uid="another-uid", id=first.id + 1000)
        again = dict(row, id=first.id + 1001)  # the same uid as the stored post
        inserted = post_store.insert_posts(conn, [again, other])
        # Twice in one transaction: the staging table starts empty each time.
        assert post_store.insert_posts(conn, [dict(other, uid="third", id=first.id + 1002)]) == {
            first.id + 1002
        }
    assert inserted == {first.id + 1000}
    assert [p.uid for p in _posts(engine)] == [first.uid, "another-uid", "third"]
    engine.dispose()


def test_a_repeated_body_is_prepared_alike_and_follows_new_user_words() -> None:
    """Short bodies are remembered (Preparer._body); a user word added meanwhile still counts."""
    from tingfeng.analyze.segment import Segmenter
    from tingfeng.ingest.prepare import Preparer

    preparer = Preparer(Segmenter(), "Asia/Shanghai", dedup_min_chars=5)
    now = datetime(2026, 11, 23, tzinfo=UTC)

    def row(item: RawItem) -> dict:
        return preparer.prepare(item, 1, None, now).row

    body = "听风舆情系统今天上线了"
    first = row(RawItem(text=body, external_id="a"))
    again = row(RawItem(text=body, external_id="b"))
    keys = ("text_norm", "tokens", "lang", "content_hash")
    assert [first[k] for k in keys] == [again[k] for k in keys]
    assert "听风舆情" not in first["tokens"].split()
    # A language the source states wins over the remembered detection.
    assert row(RawItem(text=body, external_id="c", lang="en"))["lang"] == "en"
    # A body first seen with a stated language is still detected for a source without one.
    other = "第一次由声明语言的信源送来的帖子"
    assert row(RawItem(text=other, external_id="f", lang="en"))["lang"] == "en"
    assert row(RawItem(text=other, external_id="g"))["lang"] == "zh"
    preparer.segmenter.add_word("听风舆情")
    assert "听风舆情" in row(RawItem(text=body, external_id="d"))["tokens"].split()
    # A title joins the body in the dedup text and the language.
    titled = row(RawItem(text=body, title="通知", external_id="e"))
    assert titled["content_hash"] != first["content_hash"] and titled["title_norm"] == "通知"
