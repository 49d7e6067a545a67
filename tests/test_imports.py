"""File imports (CED, JSONL, CSV, XLSX; mappings, presets, bad rows, wrong files); push payloads."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta, timezone
from itertools import islice
from pathlib import Path

import pytest

from tingfeng.collect.connectors.base import CollectContext, get_connector
from tingfeng.collect.connectors.imports import (
    EMPTY_REPOST_TEXT,
    ImportConnector,
    load_preset,
    parse_count,
    parse_time,
    preset_names,
    read_items,
)
from tingfeng.collect.connectors.push import PushConnector, PushPayloadError, parse_push_payload
from tingfeng.collect.errors import CollectError, ConfigError
from tingfeng.collect.items import ItemError, RawItem

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CED = SHARED / "rumor" / "ced" / "cascades.jsonl.gz"

needs_ced = pytest.mark.skipif(not CED.is_file(), reason="the shared CED data set is not here")


def _items(results: list[RawItem | ItemError]) -> list[RawItem]:
    return [r for r in results if isinstance(r, RawItem)]


def _errors(results: list[RawItem | ItemError]) -> list[ItemError]:
    return [r for r in results if isinstance(r, ItemError)]


def _raw_cascades(count: int) -> list[dict]:
    """The first cascades of the real file, read independently of the importer."""
    with gzip.open(CED, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in islice(handle, count)]


# --------------------------------------------------------------------------------------------
# CED


@needs_ced
def test_ced_first_cascades_posts_reposts_links_and_time_zones() -> None:
    cascades = _raw_cascades(2)
    total = sum(1 + len(c["reposts"]) for c in cascades)
    results = list(read_items(CED, format="ced", limit=total))
    assert not _errors(results)
    items = _items(results)
    assert len(items) == total
    first, second = cascades
    # The source post comes first, then its reposts, cascade after cascade.
    assert [i.kind for i in items].count("post") == 2
    assert items[0].kind == "post" and items[1 + len(first["reposts"])].kind == "post"
    post = items[0]
    assert post.external_id == "0_yBmepBtUB_2279086572" == first["id"]
    assert post.platform == "weibo"
    assert post.text.startswith("人间惨剧")
    # Unix time 1347334462 is 2012-09-11 03:34:22 UTC (11:34 in Beijing).
    assert post.published_at == datetime(2012, 9, 11, 3, 34, 22, tzinfo=UTC)
    assert (post.reposts, post.comments, post.likes) == (225, 55, 0)
    assert post.extra["label"] == "rumor" and post.extra["source_app"] == "微博 weibo.com"

    reposts = items[1 : 1 + len(first["reposts"])]
    assert len(reposts) == 205
    for item, raw in zip(reposts, first["reposts"], strict=True):
        assert item.kind == "repost" and item.platform == "weibo"
        assert item.external_id == raw["mid"]
        assert item.author == raw["uid"] and item.author.startswith("u")
        # Parent link: the reposted repost, or the source post for a direct repost.
        assert item.reposts_of == (raw["parent"] or first["id"])
        # China local time, naive: the pipeline applies the source's zone.
        assert item.published_at.tzinfo is None
        assert item.published_at == datetime.fromisoformat(raw["date"])
        assert item.text == (raw["text"] or EMPTY_REPOST_TEXT)
    assert reposts[0].extra.get("empty_repost") is True  # mid yC8Kt9U3N has no words
    direct = [r for r in reposts if r.reposts_of == first["id"]]
    chained = [r for r in reposts if r.reposts_of != first["id"]]
    assert direct and chained
    assert sum(1 for r in first["reposts"] if not r["parent"]) == len(direct)
    assert items[-1].external_id == second["reposts"][-1]["mid"]


@needs_ced
def test_ced_limit_and_resume_offset() -> None:
    all_ids = [i.external_id for i in read_items(CED, limit=300)]
    assert len(all_ids) == 300  # format auto recognises a CED file
    assert [i.external_id for i in read_items(CED, format="ced", limit=10)] == all_ids[:10]
    # Resuming skips the items already read, inside a cascade and across whole cascades.
    resumed = [i.external_id for i in read_items(CED, format="ced", offset=250, limit=50)]
    assert resumed == all_ids[250:300]


@needs_ced
def test_import_connector_keeps_offset_in_state() -> None:
    connector = get_connector("import", {"path": str(CED), "format": "ced"})
    assert isinstance(connector, ImportConnector)
    state: dict = {}
    first = list(connector.collect(CollectContext(state=state, limit=120)))
    assert len(first) == 120 and state["offset"] == 120
    # A new instance (after a restart) with the saved state goes on where the last run stopped.
    again = get_connector("import", {"path": str(CED), "format": "ced"})
    second = list(again.collect(CollectContext(state=state, limit=100)))
    expected = [i.external_id for i in read_items(CED, format="ced", limit=220)][120:]
    assert [i.external_id for i in second] == expected
    assert state["offset"] == 220


def test_ced_wrong_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"not a CED cascades file.*no text, time, reposts"):
        list(read_items(FIXTURES / "not_ced.jsonl", format="ced"))


def test_ced_bad_lines_and_dates_are_item_errors(tmp_path: Path) -> None:
    source = {"id": "9_A_1", "text": "原帖", "time": 1339332089, "counts": {}, "reposts": [
        {"mid": "r1", "parent": "", "uid": "u1", "text": "", "date": "02月06日 17:45"},
        {"mid": "r2", "parent": "r1", "uid": "u2", "text": "哈", "date": "not a date"},
    ]}  # fmt: skip
    path = tmp_path / "small.jsonl"
    path.write_text(
        json.dumps(source, ensure_ascii=False)
        + "\n{broken\n"
        + json.dumps(
            {**source, "id": "9_B_2", "time": "Sat Jun 29 12:40:09 +0800 2013", "reposts": []}
        )
        + "\n",
        encoding="utf-8",
    )
    results = list(read_items(path, format="ced"))
    assert [type(r).__name__ for r in results] == [
        "RawItem", "RawItem", "ItemError", "ItemError", "RawItem",
    ]  # fmt: skip
    # A date without its year (2012-06-10 post) is the next 6 February.
    assert results[1].published_at == datetime(2013, 2, 6, 17, 45)
    assert results[2].where == "line 1, repost 1" and "not a date" in results[2].message
    assert results[3].where == "line 2" and "invalid JSON" in results[3].message
    # Weibo API text time, converted to UTC.
    assert results[4].published_at == datetime(2013, 6, 29, 4, 40, 9, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Presets and formats


def test_presets_are_listed_and_load() -> None:
    names = preset_names()
    for name in (
        "import_mediacrawler_weibo",
        "import_mediacrawler_douyin",
        "import_mediacrawler_xhs",
        "import_hotline_12345",
    ):
        assert name in names
        assert load_preset(name).variants
    assert load_preset("mediacrawler_weibo").name == "import_mediacrawler_weibo"
    with pytest.raises(ConfigError, match=r"Unknown import preset 'nope'.*import_hotline_12345"):
        load_preset("nope")


def test_mediacrawler_weibo_jsonl_bad_rows_do_not_stop_good_ones() -> None:
    results = list(
        read_items(
            FIXTURES / "mediacrawler_weibo_contents.jsonl", preset="import_mediacrawler_weibo"
        )
    )
    items, errors = _items(results), _errors(results)
    assert [i.external_id for i in items] == ["5008123456789012", "5008123456789014"]
    post = items[0]
    assert post.text == "暴雨导致地铁站进水，部分线路停运"
    assert post.platform == "weibo" and post.kind == "post" and post.author == "城市观察"
    assert post.url == "https://m.weibo.cn/detail/5008123456789012"
    assert post.published_at == datetime(2024, 3, 5, 0, 53, 20, tzinfo=UTC)  # epoch -> UTC
    assert (post.likes, post.comments, post.reposts) == (120, 35, 12_000)  # "1.2万"
    assert post.extra == {"user_id": "1234567890", "ip_location": "北京", "keyword": "暴雨"}
    # No create_time: the text date is used and stays naive (local time of the source).
    assert items[1].published_at == datetime(2024, 3, 5, 12, 0)
    assert [(e.where, e.message.split(":")[0]) for e in errors] == [
        ("line 2", "invalid JSON"),
        ("line 4", "no text (column content is empty or missing)"),
        ("line 6", "create_time"),
    ]
    assert "下周二" in errors[2].message
    # Resuming counts every record, good or bad (blank lines are none).
    resumed = list(
        read_items(
            FIXTURES / "mediacrawler_weibo_contents.jsonl", preset="mediacrawler_weibo", offset=2
        )
    )
    assert [getattr(r, "external_id", None) or r.where for r in resumed] == [
        "5008123456789014", "line 4", "line 6",
    ]  # fmt: skip


def test_mediacrawler_weibo_comments_link_to_their_parent() -> None:
    items = _items(list(read_items(FIXTURES / "mediacrawler_weibo_comments.jsonl",
                                   preset="mediacrawler_weibo")))  # fmt: skip
    assert [i.kind for i in items] == ["comment", "comment"]
    # A top-level comment (rootid = its own id) replies to the note; a reply to its comment.
    assert items[0].reply_to == "5008123456789012"
    assert items[1].reply_to == "5008200000000001"
    assert items[0].likes == 7 and items[0].author == "居民甲"


def test_mediacrawler_douyin_csv_with_bom_and_multiline_cell() -> None:
    path = FIXTURES / "mediacrawler_douyin_contents.csv"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    results = list(read_items(path, preset="import_mediacrawler_douyin"))
    items, errors = _items(results), _errors(results)
    assert len(items) == 1 and len(errors) == 1
    video = items[0]
    assert video.external_id == "7342000000000000001" and video.platform == "douyin"
    assert video.text == "暴雨中的外卖小哥，\n送餐不易"
    assert (video.likes, video.comments, video.reposts) == (35000, 860, 410)
    assert video.published_at == datetime(2024, 3, 5, 0, 53, 20, tzinfo=UTC)
    # The second record starts on line 4: the first spans lines 2-3.
    assert errors[0].where == "line 4" and "no text" in errors[0].message


def test_mediacrawler_xhs_json_array_ms_times_and_chinese_counts() -> None:
    results = list(read_items(FIXTURES / "mediacrawler_xhs_contents.json",
                              preset="import_mediacrawler_xhs"))  # fmt: skip
    items, errors = _items(results), _errors(results)
    assert [i.external_id for i in items] == ["65e6f0000000000001", "65e6f0000000000002"]
    note = items[0]
    assert note.title == "雨天通勤攻略" and note.text == "地铁口排队太长了，建议错峰出行"
    assert note.platform == "xiaohongshu"
    assert note.published_at == datetime(2024, 3, 5, 0, 53, 20, tzinfo=UTC)  # ms epoch
    assert (note.likes, note.reposts, note.comments) == (12_000, 100_000, 35)
    assert items[1].text == "只有标题的笔记"  # empty desc: the title stands in
    assert [(e.where, e.message) for e in errors] == [
        ("entry 3", "expected a JSON object, found a string")
    ]


def test_hotline_gbk_csv_with_title_row_keeps_no_personal_data() -> None:
    path = FIXTURES / "hotline_12345_gbk.csv"
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    results = list(read_items(path, preset="import_hotline_12345"))
    items, errors = _items(results), _errors(results)
    assert [i.external_id for i in items] == ["GD20240305001", "GD20240305002", "GD20240305005"]
    first = items[0]
    assert first.text == "小区旁工地夜间施工，噪音很大影响休息" and first.title == "噪音扰民"
    assert first.published_at == datetime(2024, 3, 5, 8, 15)  # naive: hotline local time
    assert first.extra == {"category": "投诉", "region": "朝阳区"}
    assert items[2].published_at == datetime(2024, 3, 5, 11, 30)  # 2024年3月5日 11:30
    assert first.platform == "hotline_12345" and first.author is None
    flat = json.dumps([i.extra for i in items], ensure_ascii=False) + str(items)
    assert "13800000000" not in flat and "张某" not in flat
    assert [e.where for e in errors] == ["line 5", "line 6"]
    assert "不是时间" in errors[0].message and "no text" in errors[1].message
    resumed = list(read_items(path, preset="import_hotline_12345", offset=3))
    assert [getattr(r, "external_id", None) or r.where for r in resumed] == [
        "line 6", "GD20240305005",
    ]  # fmt: skip


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "utf-16"])
def test_csv_encodings_with_explicit_mapping(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "export.csv"
    text = (
        "编号,正文,发布时间,赞\r\n"
        "1,市民反映供暖不足,2024-01-10 08:00,3\r\n"
        "2,已安排检修,1704873600,1.5万\r\n"
    )
    path.write_bytes(text.encode(encoding))
    mapping = {"id": "编号", "text": "正文", "published_at": "发布时间", "likes": "赞"}
    items = _items(list(read_items(path, mapping=mapping, platform="forum")))
    assert [(i.external_id, i.text, i.likes) for i in items] == [
        ("1", "市民反映供暖不足", 3),
        ("2", "已安排检修", 15_000),
    ]
    assert items[0].published_at == datetime(2024, 1, 10, 8, 0)
    assert items[1].published_at == datetime(2024, 1, 10, 8, 0, tzinfo=UTC)
    assert {i.platform for i in items} == {"forum"}


def test_gzipped_tsv_and_declared_encoding(tmp_path: Path) -> None:
    path = tmp_path / "posts.tsv.gz"
    with gzip.open(path, "wb") as out:
        out.write("text\ttime\n第一条\t2024-03-05T10:00:00+08:00\n".encode("gb18030"))
    items = _items(list(read_items(path, encoding="gb18030")))
    assert items[0].text == "第一条"
    assert items[0].published_at == datetime(2024, 3, 5, 2, 0, tzinfo=UTC)


def test_csv_in_wrong_encoding_reports_rows(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"text\nhello\n" + "第二行\n".encode("gbk"))
    results = list(read_items(path, encoding="utf-8"))
    assert _items(results)[0].text == "hello"
    assert "not valid utf-8" in _errors(results)[0].message


def test_jsonl_dotted_paths_and_time_format(tmp_path: Path) -> None:
    path = tmp_path / "api.jsonl"
    rows = [
        {"mblog": {"id": 4987, "text": "你好", "created_at": "Tue Mar 05 10:20:00 +0800 2024",
                   "user": {"screen_name": "甲"}, "pics": [{"url": "http://x/1.jpg"}]}},
        {"mblog": {"id": 4988, "text": "世界", "created_at": "05/03/2024 10:21"}},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    mapping = {
        "id": "mblog.id",
        "text": "mblog.text",
        "author": "mblog.user.screen_name",
        "published_at": "mblog.created_at",
        "extra.picture": "mblog.pics.0.url",
    }
    results = list(read_items(path, mapping=mapping, format="jsonl"))
    first = results[0]
    assert isinstance(first, RawItem)
    assert (first.external_id, first.text, first.author) == ("4987", "你好", "甲")
    assert first.published_at == datetime(2024, 3, 5, 10, 20, tzinfo=timezone(timedelta(hours=8)))
    assert first.extra == {"picture": "http://x/1.jpg"}
    # "05/03/2024" is ambiguous; the first line's format does not fit it: an explicit format does.
    strict = list(read_items(path, mapping=mapping, time_format="%d/%m/%Y %H:%M"))
    assert isinstance(strict[0], ItemError)
    assert "does not match the time format" in strict[0].message
    assert strict[1].published_at == datetime(2024, 3, 5, 10, 21)


def test_default_mapping_reads_our_own_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "own.json"  # JSON Lines under a .json name
    rows = [
        {"id": "a1", "text": "内容", "published_at": "2024-03-05 10:00", "kind": "评论",
         "reply_to": "p0", "platform": "tieba"},
        # Other data under our field names is left out rather than failing every row.
        {"id": 7, "content": "正文", "user": {"name": "x"}, "kind": "video", "time": 1709600000},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    first, second = list(read_items(path))
    assert isinstance(first, RawItem) and isinstance(second, RawItem)
    assert (first.kind, first.reply_to, first.platform) == ("comment", "p0", "tieba")
    assert (second.external_id, second.text, second.author, second.kind) == (
        "7",
        "正文",
        None,
        "post",
    )
    assert second.published_at == datetime(2024, 3, 5, 0, 53, 20, tzinfo=UTC)
    # The same data mapped by hand must read: a wrong kind is then an error.
    (bad,) = [r for r in read_items(path, mapping={"text": ["text", "content"], "kind": "kind"})
              if isinstance(r, ItemError)]  # fmt: skip
    assert bad.where == "line 2" and "kind 'video' is not one of" in bad.message


def test_tsv_with_title_line_finds_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_text("舆情导出 2024年3月\n编号\t正文\n1\t第一条, 带逗号\n", encoding="utf-8")
    (item,) = list(read_items(path, mapping={"id": "编号", "text": "正文"}))
    assert isinstance(item, RawItem) and item.text == "第一条, 带逗号"


def test_xlsx_with_preset_title_row_and_number_ids(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "工单"
    sheet.append(["12345 工单导出"])
    sheet.append(["工单编号", "来电时间", "标题", "诉求内容", "诉求类型", "所属区域"])
    sheet.append(
        [2024030500001, datetime(2024, 3, 5, 8, 15), "噪音", "夜间施工噪音", "投诉", "朝阳区"]
    )
    sheet.append([None, None, None, None, None, None])
    sheet.append([2024030500002.0, 45356.5, "积水", "路口积水严重", "求助", "海淀区"])
    sheet.append(["GD3", "2024-03-05 xx", "坏时间", "时间无法识别", "咨询", "西城区"])
    path = tmp_path / "hotline.xlsx"
    book.save(path)
    results = list(read_items(path, preset="import_hotline_12345"))
    items, errors = _items(results), _errors(results)
    assert [i.external_id for i in items] == ["2024030500001", "2024030500002"]
    assert items[0].published_at == datetime(2024, 3, 5, 8, 15)
    # A date typed as a number is an Excel day serial: 45356.5 is 2024-03-05 12:00.
    assert items[1].published_at == datetime(2024, 3, 5, 12, 0)
    assert items[1].extra == {"category": "求助", "region": "海淀区"}
    assert [e.where for e in errors] == ["row 6"]


def test_xlsx_without_matching_header_lists_columns(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["编号", "内容摘要", "日期"])
    book.active.append([1, "abc", "2024-01-01"])
    path = tmp_path / "other.xlsx"
    book.save(path)
    with pytest.raises(ConfigError) as caught:
        list(read_items(path, mapping={"text": "正文"}))
    message = str(caught.value)
    assert "no column for the text" in message and "'正文'" in message
    assert "'编号', '内容摘要', '日期'" in message
    with pytest.raises(ConfigError, match="no sheet 'X'; sheets: Sheet"):
        list(read_items(path, mapping={"text": "内容摘要"}, sheet="X"))


def test_mapped_column_missing_from_header(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("title,body\nx,y\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"lacks the mapped column\(s\) likes -> 'like_count'"):
        list(read_items(path, mapping={"text": "body", "likes": "like_count"}))


def test_wrong_files_raise_with_advice(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="starts like a PNG image"):
        read_items(FIXTURES / "picture.csv")
    with pytest.raises(ConfigError, match="does not exist"):
        read_items(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="is a folder"):
        read_items(tmp_path)
    with pytest.raises(ConfigError, match=r"is not an \.xlsx workbook"):
        read_items(FIXTURES / "hotline_12345_gbk.csv", format="xlsx")
    with pytest.raises(ConfigError, match=r"first record has no text field.*'note_id'"):
        read_items(FIXTURES / "mediacrawler_weibo_contents.jsonl", mapping={"text": "body"})
    with pytest.raises(ConfigError, match="format"):
        read_items(FIXTURES / "not_ced.jsonl", format="yaml")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown field 'txt'"):
        read_items(FIXTURES / "not_ced.jsonl", mapping={"txt": "body"})
    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0" + b"\x00" * 100)
    with pytest.raises(ConfigError, match="old-style Excel"):
        read_items(old)


def test_import_connector_reads_appended_lines_and_restarts_on_new_file(tmp_path: Path) -> None:
    path = tmp_path / "stream.jsonl"
    path.write_text('{"id": "1", "text": "one"}\n{"id": "2", "text": "two"}\n', encoding="utf-8")
    connector = get_connector("import", {"path": str(path)})
    state: dict = {}
    assert [i.external_id for i in connector.collect(CollectContext(state=state))] == ["1", "2"]
    assert list(connector.collect(CollectContext(state=state))) == []
    with path.open("a", encoding="utf-8") as out:
        out.write('{"id": "3", "text": "three"}\n')
    assert [i.external_id for i in connector.collect(CollectContext(state=state))] == ["3"]
    path.write_text('{"id": "9", "text": "new"}\n', encoding="utf-8")  # smaller: a new file
    assert [i.external_id for i in connector.collect(CollectContext(state=state))] == ["9"]


def test_import_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="unknown encoding 'klingon'"):
        get_connector("import", {"path": "x.csv", "encoding": "klingon"})
    with pytest.raises(ConfigError, match="Unknown import preset"):
        get_connector("import", {"path": "x.csv", "preset": "missing"})
    with pytest.raises(ConfigError, match="delimiter must be one character"):
        get_connector("import", {"path": "x.csv", "delimiter": ";;"})


# --------------------------------------------------------------------------------------------
# Values


def test_parse_time_readings() -> None:
    now = datetime(2024, 3, 10, 12, 0)
    assert parse_time(1709600000) == datetime(2024, 3, 5, 0, 53, 20, tzinfo=UTC)
    assert parse_time(1709600000123) == datetime(2024, 3, 5, 0, 53, 20, 123000, tzinfo=UTC)
    assert parse_time("1709600000") == datetime(2024, 3, 5, 0, 53, 20, tzinfo=UTC)
    assert parse_time("2024/3/5 8:05") == datetime(2024, 3, 5, 8, 5)
    assert parse_time("2024.03.05") == datetime(2024, 3, 5)
    assert parse_time("20240305") == datetime(2024, 3, 5)
    assert parse_time("2024年3月5日 10:20") == datetime(2024, 3, 5, 10, 20)
    assert parse_time("2024年03月05日10时20分") == datetime(2024, 3, 5, 10, 20)
    assert parse_time("2024-03-05T10:20:00Z") == datetime(2024, 3, 5, 10, 20, tzinfo=UTC)
    assert parse_time("Tue, 05 Mar 2024 10:20:00 +0800").utcoffset() == timedelta(hours=8)
    # Without a year: the latest such date not in the future.
    assert parse_time("3月5日 10:20", now=now) == datetime(2024, 3, 5, 10, 20)
    assert parse_time("12-30 10:20", now=now) == datetime(2023, 12, 30, 10, 20)
    assert parse_time("  ") is None and parse_time(None) is None
    for bad in ("tomorrow", "12", 42, float("nan"), [1]):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_parse_count_readings() -> None:
    assert [parse_count(v) for v in (12, "1,234", "1.2万", "10万+", "3k", "2亿", 4.0)] == [
        12, 1234, 12_000, 100_000, 3000, 200_000_000, 4,
    ]  # fmt: skip
    assert [parse_count(v) for v in ("", None, "abc", -1, True)] == [None] * 5


# --------------------------------------------------------------------------------------------
# Push payloads


def test_push_payload_object_and_list() -> None:
    payload = {
        "platform": "weibo",
        "posts": [
            {
                "id": 4987654321,
                "text": "市民反映地铁站积水",
                "published_at": "2024-03-05T10:20:00+08:00",
                "author": "某网友",
                "likes": 3,
                "reposts_of": 4987000000,
                "extra": {"source": "crawler-7"},
            },
            {
                "title": "只有标题",
                "url": "https://example.cn/a",
                "kind": "article",
                "platform": "news",
            },
            {"text": "毫秒时间", "published_at": 1709600000000, "kind": "评论", "reply_to": "p1"},
        ],
    }
    first, second, third = parse_push_payload(payload)
    assert isinstance(first, RawItem)
    assert (first.external_id, first.platform, first.reposts_of) == (
        "4987654321",
        "weibo",
        "4987000000",
    )
    assert first.published_at == datetime(2024, 3, 5, 2, 20, tzinfo=UTC)
    assert first.likes == 3 and first.extra == {"source": "crawler-7"} and first.kind == "post"
    assert isinstance(second, RawItem)
    assert (second.kind, second.platform, second.title) == ("article", "news", "只有标题")
    assert isinstance(third, RawItem)
    assert third.published_at == datetime(2024, 3, 5, 0, 53, 20, tzinfo=UTC)
    assert (third.kind, third.reply_to, third.platform) == ("comment", "p1", "weibo")
    # A bare list, with the source's defaults; a naive time stays naive.
    (item,) = parse_push_payload(
        [{"text": "t", "published_at": "2024-03-05 10:20"}], platform="forum", kind="comment"
    )
    assert isinstance(item, RawItem)
    assert (item.platform, item.kind, item.published_at) == (
        "forum", "comment", datetime(2024, 3, 5, 10, 20),
    )  # fmt: skip
    (single,) = parse_push_payload({"text": "一条"})
    assert isinstance(single, RawItem) and single.text == "一条"


def test_push_payload_bad_entries_name_field_and_problem() -> None:
    results = parse_push_payload(
        {
            "posts": [
                {"text": "ok"},
                {"text": "bad time", "published_at": "昨天下午"},
                {"text": "negative", "likes": -1},
                {"text": "typo", "publish_time": "2024-03-05"},
                "just a string",
                {"title": "  "},
                {"text": "bad kind", "kind": "tweet"},
                {"text": "x" * 10, "id": "i" * 300},
            ]
        }
    )
    assert isinstance(results[0], RawItem)
    errors = results[1:]
    assert all(isinstance(e, ItemError) for e in errors)
    assert [e.where for e in errors] == [f"posts[{n}]" for n in range(1, 8)]
    messages = [e.message for e in errors]
    assert messages[0].startswith("published_at: cannot read '昨天下午' as a date/time")
    assert messages[1] == "likes: Input should be greater than or equal to 0"
    assert messages[2].startswith("publish_time: unknown field (fields: text, html")
    assert messages[3] == "expected a post object, found a string"
    assert messages[4] == "a post needs text, html or a title"
    assert messages[5].startswith("kind: kind 'tweet' is not one of article, post")
    assert messages[6].startswith("id: String should have at most 200 characters")


def test_push_payload_shape_errors() -> None:
    with pytest.raises(CollectError, match="at most 1000"):  # the API answers it with 422
        parse_push_payload({"posts": [{"text": "a"}] * 1001})
    assert len(parse_push_payload({"posts": [{"text": "a"}] * 1000})) == 1000
    with pytest.raises(PushPayloadError, match='no "posts" list'):
        parse_push_payload({"items": []})
    with pytest.raises(PushPayloadError, match="must be a list"):
        parse_push_payload({"posts": {"text": "a"}})
    with pytest.raises(PushPayloadError, match="not a string"):
        parse_push_payload("text")
    with pytest.raises(PushPayloadError, match="Unknown key"):
        parse_push_payload({"posts": [], "token": "x"})
    assert parse_push_payload({"posts": []}) == []


def test_push_connector_collects_nothing_and_parses_with_defaults() -> None:
    connector = get_connector("push", {"platform": "wechat"})
    assert isinstance(connector, PushConnector)
    assert list(connector.collect(CollectContext())) == []
    (item,) = connector.parse({"posts": [{"text": "公众号文章"}]})
    assert isinstance(item, RawItem) and item.platform == "wechat"
    with pytest.raises(ConfigError, match="Invalid configuration for a push source"):
        get_connector("push", {"token": "x"})
