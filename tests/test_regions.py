"""Administrative divisions named in posts: the table, short forms, ambiguity, source regions."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import threading
import time
from pathlib import Path

import pytest

from tingfeng.analyze.normalize import normalize
from tingfeng.analyze.regions import (
    Division,
    DivisionTable,
    RegionFinder,
    RegionMatch,
    adcodes_path,
    default_finder,
    default_table,
    resolve_region,
    short_name,
)

CED = Path("/work/shared/data/rumor/ced/cascades.jsonl.gz")

# 31 mainland provincial-level divisions, then Taiwan, Hong Kong and Macau.
MAINLAND = [11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46]
MAINLAND += [50, 51, 52, 53, 54, 61, 62, 63, 64, 65]


@pytest.fixture(scope="module")
def table() -> DivisionTable:
    return default_table()


@pytest.fixture(scope="module")
def finder() -> RegionFinder:
    return default_finder()


def codes(matches: list[RegionMatch]) -> list[str]:
    return [m.code for m in matches]


# --- the table ---------------------------------------------------------------------------


def test_table_has_every_province(table: DivisionTable) -> None:
    provinces = {d.code for d in table.provinces()}
    assert len(MAINLAND) == 31
    assert {f"{p}0000" for p in MAINLAND} <= provinces
    assert provinces == {f"{p}0000" for p in [*MAINLAND, 71, 81, 82]}
    names = {d.name for d in table.provinces()}
    assert {"浙江省", "北京市", "广西壮族自治区", "新疆维吾尔自治区", "香港特别行政区"} <= names


def test_table_levels_match_the_file(table: DivisionTable) -> None:
    with adcodes_path().open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) > 3400
    county_rows = [r for r in rows if r["adcode"][4:6] != "00" and r["name"] != "市辖区"]
    counties = [d for d in table if d.level == "county"]
    cities = [d for d in table if d.level == "city"]
    assert len(counties) == len(county_rows)
    assert 2800 <= len(counties) <= 2900
    assert 330 <= len(cities) <= 340
    assert all(len(d.code) == 6 and d.code.isdigit() for d in table)
    # Placeholder rows are not divisions.
    assert table.by_name("市辖区") == []
    assert table.by_name("省直辖县级行政区划") == []


def test_parents_and_paths(table: DivisionTable) -> None:
    xihu = table.get("330106")
    assert xihu is not None
    assert (xihu.name, xihu.level, xihu.parents) == ("西湖区", "county", ("330000", "330100"))
    assert xihu.path == ("浙江省", "杭州市", "西湖区")
    assert xihu.parent == "330100" and xihu.province == "330000"
    # A municipality's districts hang on the municipality itself.
    chaoyang = table.get("110105")
    assert chaoyang is not None and chaoyang.parents == ("110000",)
    assert chaoyang.path == ("北京市", "朝阳区")
    # A county-level city governed by its province (湖北 仙桃) and a city without districts.
    xiantao = table.get("429004")
    assert xiantao is not None and xiantao.level == "county" and xiantao.parents == ("420000",)
    dongguan = table.get("441900")
    assert dongguan is not None and dongguan.level == "city" and table.children("441900") == []
    assert len(table.by_name("鼓楼区")) == 4
    assert {d.name for d in table.children("330100")} >= {"西湖区", "上城区", "萧山区"}
    # Placeholder codes give the division above them; 12-digit codes are accepted.
    assert table.get("110100") == table.get("110000")
    assert table.get("330106000000") == xihu
    assert table.get("339999") is None


# --- short forms -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("杭州市", "杭州"),
        ("浙江省", "浙江"),
        ("广西壮族自治区", "广西"),
        ("内蒙古自治区", "内蒙古"),
        ("新疆维吾尔自治区", "新疆"),
        ("宁夏回族自治区", "宁夏"),
        ("香港特别行政区", "香港"),
        ("恩施土家族苗族自治州", "恩施"),
        ("巴音郭楞蒙古自治州", "巴音郭楞"),
        ("大兴安岭地区", "大兴安岭"),
        ("锡林郭勒盟", "锡林郭勒"),
        ("浦东新区", "浦东"),
        ("神农架林区", "神农架"),
        ("义乌市", "义乌"),
        ("沛县", None),
        ("鄂伦春自治旗", None),
    ],
)
def test_short_name(name: str, short: str | None) -> None:
    assert short_name(name) == short


def test_short_forms_match(finder: RegionFinder) -> None:
    assert codes(finder.find("广西、内蒙古和新疆都下雪了")) == ["450000", "150000", "650000"]
    assert codes(finder.find("杭州今天下雨")) == ["330100"]
    assert codes(finder.find("义乌小商品市场")) == ["330782"]
    assert codes(finder.find("东莞一工厂")) == ["441900"]
    names = finder.names(standalone_only=True)
    assert {"杭州", "广西", "义乌"} <= names
    assert not {"海淀", "公安", "鼓楼", "西湖"} & names
    assert {"海淀", "公安"} <= finder.names()


def test_generic_short_forms_need_their_parent(finder: RegionFinder) -> None:
    # Two-character districts are ordinary words or ambiguous: only under their parent.
    assert finder.find("海淀的房价") == []
    assert codes(finder.find("北京海淀的房价")) == ["110108"]
    assert finder.find("西湖边散步") == []
    # A county name that is a common word (公安县) counts only in full or in context.
    assert finder.find("公安机关已经介入调查") == []
    assert codes(finder.find("湖北公安县发生洪水")) == ["421022"]
    # 临安 (a common word too) under its city; the table still has the 2016 临安市.
    assert finder.find("临安的山核桃") == []
    assert codes(finder.find("杭州市临安区")) == ["330185"]
    # A city short form that is also a province's: the province, unless the context says so.
    assert codes(finder.find("海南的天气")) == ["460000"]
    assert codes(finder.find("青海海南的天气")) == ["632500"]
    assert codes(finder.find("吉林下雪了")) == ["220000"]
    matches = finder.find("吉林船营区")
    assert codes(matches) == ["220204"]
    assert matches[0].path == ("吉林省", "吉林市", "船营区")


def test_names_inside_other_words_do_not_count(finder: RegionFinder) -> None:
    assert finder.find("孙中山先生") == []
    assert finder.find("两者大同小异") == []
    assert finder.find("乡镇和县城") == []
    assert finder.find("现代县域经济") == []
    assert finder.find("浙江大学和湖南卫视") == []
    # Longer names are not checked: 浙江省 in 浙江省委 counts.
    assert codes(finder.find("浙江省委书记")) == ["330000"]
    # Names run together are still names.
    assert codes(finder.find("山西大同的煤")) == ["140200"]
    assert codes(finder.find("上海浦东机场")) == ["310115"]
    assert codes(finder.find("在沛县发生")) == ["320322"]


# --- ambiguity ---------------------------------------------------------------------------


def test_ambiguous_county_is_not_guessed(finder: RegionFinder) -> None:
    assert finder.find("鼓楼区一小区停电") == []
    assert finder.find("朝阳区一小区停电") == []


def test_ambiguity_settled_by_the_text(finder: RegionFinder) -> None:
    assert codes(finder.find("南京鼓楼区一小区停电")) == ["320106"]
    assert codes(finder.find("福州市鼓楼区一小区停电")) == ["350102"]
    assert codes(finder.find("北京朝阳区")) == ["110105"]
    assert codes(finder.find("长春朝阳区")) == ["220104"]
    # The province alone is enough when only one candidate lies in it.
    assert codes(finder.find("吉林朝阳区")) == ["220104"]
    matches = finder.find("鼓楼区停电，据南京供电公司说")
    assert codes(matches) == ["320106"] and matches[0].resolved_by == "text"
    # North, either way: 北京朝阳 is the district, plain 朝阳 the city in 辽宁.
    assert codes(finder.find("北京朝阳群众")) == ["110105"]
    assert codes(finder.find("朝阳的天气")) == ["211300"]


def test_ambiguity_settled_by_the_source_region(finder: RegionFinder) -> None:
    matches = finder.find("鼓楼区一小区停电", "福州")
    assert codes(matches) == ["350102"]
    assert matches[0].origin == "text" and matches[0].resolved_by == "source"
    assert codes(finder.find("鼓楼区一小区停电", "320100")) == ["320106"]
    # The text beats the source.
    assert codes(finder.find("南京鼓楼区一小区停电", "福州")) == ["320106"]
    # Context-only short forms count under the source's city.
    assert codes(finder.find("萧山一男子见义勇为", "浙江省杭州市")) == ["330109"]
    assert finder.find("萧山一男子见义勇为") == []


def test_still_ambiguous_gives_the_common_ancestor(finder: RegionFinder) -> None:
    # Two 鼓楼区 in 江苏 (南京, 徐州): the province, no county.
    matches = finder.find("江苏鼓楼区")
    assert codes(matches) == ["320000"]
    # Every 桥西区 is in 河北.
    matches = finder.find("桥西区一小区停电")
    assert codes(matches) == ["130000"] and matches[0].resolved_by == "ancestor"
    # 鼓楼区 in 南京, 福州, 徐州, 开封: no common ancestor, nothing.
    assert finder.find("鼓楼区") == []


# --- English posts: Latin spellings ---------------------------------------------------------


def test_english_posts_name_places_in_pinyin(finder: RegionFinder) -> None:
    def found(text: str, source: str | None = None) -> list[str]:
        return codes(finder.find(normalize(text), source))

    assert found("Floods hit Guangdong province and Shenzhen; residents evacuated") == ["440300"]
    assert found("Protesters gathered in Hong Kong, then in Macau") == ["810000", "820000"]
    assert found("A gas blast in Xi'an and another in Xian county") == ["610100"]
    assert found("Tibet and Inner Mongolia") == ["540000", "150000"]
    # Shaanxi is 陕西; plain "Shanxi" is 山西 or 陕西 and needs something to settle it.
    assert found("Shaanxi") == ["610000"]
    assert found("Shanxi") == []
    # Spelled alike (台州, 泰州): settled by the province, as 鼓楼区 is in Chinese.
    assert found("A factory fire in Taizhou") == []
    assert found("A factory fire in Taizhou, Zhejiang") == ["331000"]
    assert found("A factory fire in Taizhou", "江苏") == ["321200"]
    # Context-only forms stay so: Chaoyang names the city in 辽宁, the district with Beijing.
    assert found("Chaoyang district, Beijing, was flooded") == ["110105"]


def test_latin_spellings_stand_alone_and_only_outside_chinese(finder: RegionFinder) -> None:
    assert finder.find("shanghaied sailors and the hangzhouer") == []
    assert finder.find("ali baba") == []  # 阿里地区 is not spelled out: "ali" is a name
    assert codes(finder.find("#shenzhen: traffic")) == ["440300"]
    # In Chinese posts, pinyin is in addresses and user names, not what the post is about.
    assert finder.find("网友 @shenzhen_news 转发：www.hangzhou.gov.cn") == []
    assert codes(finder.find("深圳网友 @hangzhou_news 说")) == ["440300"]
    # The names of places used by the entity rules stay Chinese.
    assert "shenzhen" not in finder.names()


def test_latin_forms_file_matches_the_table(finder: RegionFinder) -> None:
    from tingfeng.analyze.regions import LATIN_FORMS

    forms = json.loads(LATIN_FORMS.read_text(encoding="utf-8"))
    assert len(forms) > 330  # every province and city short form, but those too short
    chinese = finder.names()
    assert set(forms) <= chinese  # scripts/division_latin.py made it from this table
    spellings = [s for v in forms.values() for s in v]
    assert all(s == s.lower() and len(s) >= 4 for s in spellings)
    assert {"beijing", "guangdong", "harbin", "urumqi", "hong kong"} <= set(spellings)


# --- results -----------------------------------------------------------------------------


def test_most_specific_with_ancestors_in_path(finder: RegionFinder) -> None:
    matches = finder.find("浙江杭州西湖区发生一起交通事故，杭州交警赶到现场")
    assert len(matches) == 1
    match = matches[0]
    assert (match.code, match.name, match.level) == ("330106", "西湖区", "county")
    assert match.path == ("浙江省", "杭州市", "西湖区")
    assert match.path_codes == ("330000", "330100", "330106")
    assert match.origin == "text"
    evidence = {e.text: (e.code, e.count) for e in match.evidence}
    assert evidence == {"浙江": ("330000", 1), "杭州": ("330100", 2), "西湖区": ("330106", 1)}
    assert match.mentions == 1
    spans = [span for e in match.evidence for span in e.spans]
    assert (0, 2) in spans and (2, 4) in spans and (4, 7) in spans

    every = finder.find_all("浙江杭州西湖区发生一起交通事故，杭州交警赶到现场")
    assert codes(every) == ["330000", "330100", "330106"]
    assert [m.mentions for m in every] == [1, 2, 1]


def test_siblings_are_separate_and_counted(finder: RegionFinder) -> None:
    text = "杭州和宁波两地，杭州市的网友和宁波网友都在讨论，杭州"
    matches = finder.find(text)
    assert codes(matches) == ["330100", "330200"]
    assert [m.mentions for m in matches] == [3, 2]
    hangzhou = matches[0]
    assert {e.text: e.count for e in hangzhou.evidence} == {"杭州": 2, "杭州市": 1}
    for evidence in hangzhou.evidence:
        for start, end in evidence.spans:
            assert text[start:end] == evidence.text


def test_source_region_when_the_text_names_none(finder: RegionFinder) -> None:
    matches = finder.find("今天天气不错，适合出门", "浙江省杭州市")
    assert len(matches) == 1
    match = matches[0]
    assert (match.code, match.origin, match.resolved_by) == ("330100", "source", None)
    assert match.evidence == ()
    assert match.path == ("浙江省", "杭州市")
    # The text's own regions win over the source's.
    assert codes(finder.find("宁波今天下雨", "杭州")) == ["330200"]
    # Nothing named anywhere: nothing; an unknown source region is ignored.
    assert finder.find("今天天气不错") == []
    assert finder.find("今天天气不错", "火星") == []
    assert finder.find("鼓楼区停电", "不存在的地方") == []
    division = finder.resolve_region("330106")
    assert division is not None
    assert codes(finder.find("今天天气不错", division)) == ["330106"]


def test_to_dict_is_json(finder: RegionFinder) -> None:
    matches = finder.find("浙江杭州西湖区")
    data = json.loads(json.dumps([m.to_dict() for m in matches], ensure_ascii=False))
    assert data[0]["code"] == "330106"
    assert data[0]["path"] == ["浙江省", "杭州市", "西湖区"]
    assert data[0]["origin"] == "text"
    assert {"text": "浙江", "code": "330000", "spans": [[0, 2]]} in data[0]["evidence"]


# --- configuration values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("杭州", "330100"),
        ("杭州市", "330100"),
        ("浙江省杭州市", "330100"),
        ("浙江杭州", "330100"),
        (" 浙江省 杭州市 ", "330100"),
        ("330100", "330100"),
        ("330106", "330106"),
        ("330106000000", "330106"),
        ("浙江省杭州市西湖区", "330106"),
        ("33", "330000"),
        ("浙江", "330000"),
        ("北京朝阳", "110105"),
        ("110100", "110000"),
        ("广西", "450000"),
        ("仙桃市", "429004"),
        ("湖北仙桃", "429004"),
    ],
)
def test_resolve_region(value: str, code: str) -> None:
    division = resolve_region(value)
    assert isinstance(division, Division)
    assert division.code == code


@pytest.mark.parametrize(
    "value", ["", "   ", "鼓楼区", "江苏鼓楼区", "杭州 宁波", "火星", "999999", "12345", "😀"]
)
def test_resolve_region_rejects_unclear_values(value: str) -> None:
    assert resolve_region(value) is None


# --- robustness --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", " ", "😀🎉🔥", "\x00\x01\x02\x7f\u200b", "\ud800\udfff", "a" * 5000, "。" * 1000],
)
def test_bad_input_does_not_crash(finder: RegionFinder, text: str) -> None:
    assert finder.find(text) == []
    assert finder.find_all(text) == []


def test_control_characters_and_surrogates_around_names(finder: RegionFinder) -> None:
    assert codes(finder.find("\x00杭州\x01")) == ["330100"]
    assert codes(finder.find("\ud800浙江省杭州市\udfff")) == ["330100"]
    assert codes(finder.find("😀杭州市😀西湖区")) == ["330106"]
    # Offsets count characters, emoji included.
    match = finder.find("😀杭州市")[0]
    assert match.evidence[0].spans == ((1, 4),)


def test_huge_text(finder: RegionFinder) -> None:
    filler = "今天天气很好，我们一起去公园散步。" * 3000  # ~50,000 characters
    text = filler + "浙江省杭州市西湖区" + filler
    assert len(text) > 100_000
    started = time.perf_counter()
    matches = finder.find(text)
    assert time.perf_counter() - started < 5
    assert codes(matches) == ["330106"]
    many = finder.find("杭州" * 50_000)
    assert codes(many) == ["330100"] and many[0].mentions == 50_000


def test_threads_share_one_finder(finder: RegionFinder) -> None:
    texts = ["浙江杭州西湖区", "南京鼓楼区", "北京朝阳群众", "今天天气不错", "山西大同"] * 40
    expected = [codes(finder.find(t)) for t in texts]
    results: dict[int, list[list[str]]] = {}

    def work(number: int) -> None:
        results[number] = [codes(finder.find(t)) for t in texts]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result == expected for result in results.values())


def test_no_match_is_fast(finder: RegionFinder) -> None:
    text = ("今天天气很好，我们一起去公园散步吧，顺便买点水果回来。" * 4)[:100]
    finder.find(text)
    rounds = 2000
    started = time.perf_counter()
    for _ in range(rounds):
        finder.find(text)
    per_call = (time.perf_counter() - started) / rounds
    # ~10 µs measured on a loaded 2-vCPU VM; a bound a busy CI machine still meets.
    assert per_call < 200e-6


def test_cpca_itself_is_not_imported() -> None:
    import sys

    default_table()
    assert "cpca" not in sys.modules


# --- real posts --------------------------------------------------------------------------


@pytest.mark.skipif(not CED.exists(), reason="CED data set not available")
def test_real_posts_smoke(finder: RegionFinder) -> None:
    texts: list[str] = []
    with gzip.open(CED, "rt", encoding="utf-8") as handle:
        for line in itertools.islice(handle, 3000):
            item = json.loads(line)
            for text in [item.get("text"), *(r.get("text") for r in item.get("reposts") or ())]:
                if text and len(texts) < 2000:
                    texts.append(normalize(text))
            if len(texts) >= 2000:
                break
    assert len(texts) == 2000
    found = [finder.find(text) for text in texts]
    with_region = sum(1 for matches in found if matches)
    assert with_region >= 100
    for text, matches in zip(texts, found, strict=True):
        for match in matches:
            assert match.origin == "text"
            for evidence in match.evidence:
                for start, end in evidence.spans:
                    assert text[start:end] == evidence.text
