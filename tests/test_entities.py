"""People, organisations and places: jieba's tags plus the merge rules."""

from __future__ import annotations

import gzip
import itertools
import json
import time
from pathlib import Path

import pytest
import rjieba

from tingfeng.analyze.entities import Entities, Entity, extract_entities
from tingfeng.analyze.normalize import normalize
from tingfeng.analyze.segment import Segmenter

CED = Path("/work/shared/data/rumor/ced/cascades.jsonl.gz")


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter()


def names(entities: list[Entity]) -> list[str]:
    return [e.name for e in entities]


# --- organisations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "organisation"),
    [
        ("杭州市西湖区人民政府今天发布通报", "杭州市西湖区人民政府"),
        ("记者从南京市鼓楼区人民法院获悉此案已经开庭", "南京市鼓楼区人民法院"),
        ("浙江大学医学院附属第二医院的医生说", "浙江大学医学院附属第二医院"),
        ("北京市公安局朝阳分局已经立案", "北京市公安局朝阳分局"),
        ("患者被送往杭州市第一人民医院抢救", "杭州市第一人民医院"),
        ("国家卫生健康委员会发布通知", "国家卫生健康委员会"),
        ("深圳市南山区桃源街道办事处回应称", "深圳市南山区桃源街道办事处"),
        ("西湖派出所民警赶到现场", "西湖派出所"),
        ("郑州富士康工厂又招工了", "郑州富士康工厂"),
        ("据广州日报报道", "广州日报"),
        ("江苏省人民检察院提起公诉", "江苏省人民检察院"),
    ],
)
def test_organisation_parts_are_merged(segmenter: Segmenter, text: str, organisation: str) -> None:
    entities = extract_entities(text, segmenter)
    assert names(entities.organizations) == [organisation]
    # The places inside an organisation's name are not listed again as places.
    assert entities.places == []


def test_organisations_jieba_knows(segmenter: Segmenter) -> None:
    entities = extract_entities("据新华社报道，中国人民银行和华为技术有限公司签约", segmenter)
    assert names(entities.organizations) == ["新华社", "中国人民银行", "华为技术有限公司"]


def test_names_side_by_side_stay_apart(segmenter: Segmenter) -> None:
    entities = extract_entities("北京大学清华大学联合发布", segmenter)
    assert names(entities.organizations) == ["北京大学", "清华大学"]
    # A person before a place does not join the organisation after it.
    entities = extract_entities("张三在杭州市第一人民医院接受治疗", segmenter)
    assert names(entities.organizations) == ["杭州市第一人民医院"]
    assert names(entities.persons) == ["张三"]
    # A common noun between two names stops the organisation at the second.
    entities = extract_entities("上海记者北京医院采访", segmenter)
    assert "上海记者北京医院" not in names(entities.organizations)


def test_bare_organisation_words_are_not_organisations(segmenter: Segmenter) -> None:
    assert extract_entities("家长聚集在教育局门口", segmenter).organizations == []
    assert extract_entities("某某小学的家长", segmenter).organizations == []
    assert extract_entities("他去了医院", segmenter).organizations == []
    # 人民政府 alone names no particular government.
    assert extract_entities("人民政府为人民", segmenter).organizations == []


# --- people and places --------------------------------------------------------------------


def test_people(segmenter: Segmenter) -> None:
    entities = extract_entities("马云说，马云和马化腾见面了，李明医生也在", segmenter)
    assert entities.persons == [Entity("马云", 2), Entity("马化腾", 1), Entity("李明", 1)]


def test_common_words_jieba_tags_as_names_are_not_people(segmenter: Segmenter) -> None:
    # jieba's dictionary tags 谢谢, 宝宝, 啊啊啊 and 今天上午 `nr`.
    tagged = segmenter.dictionary.tag("谢谢宝宝啊啊啊今天上午", True)
    assert {w for w, pos in tagged if pos == "nr"} >= {
        "谢谢", "宝宝", "啊啊啊", "今天上午",
    }  # fmt: skip
    text = "谢谢大家！宝宝今天上午发烧了，啊啊啊急死了，李明医生说没事"
    assert names(extract_entities(text, segmenter).persons) == ["李明"]


def test_anonymised_people(segmenter: Segmenter) -> None:
    entities = extract_entities("张某在家中被李某某打伤，王某报警", segmenter)
    assert names(entities.persons) == ["张某", "李某某", "王某"]


def test_single_characters_are_dropped(segmenter: Segmenter) -> None:
    tokens = segmenter.dictionary.tag("李说", True)
    assert tokens  # whatever jieba makes of it, no one-character name comes out
    for entity in extract_entities("李，王，张", segmenter).persons:
        assert len(entity.name) >= 2


def test_places(segmenter: Segmenter) -> None:
    # jieba tags 拉萨 as a transliterated name and 合肥 as a common noun.
    entities = extract_entities("拉萨和合肥的网友说公安机关已介入，北京也有", segmenter)
    assert names(entities.places) == ["拉萨", "合肥", "北京"]
    assert entities.persons == []
    # A county whose short form is a common word is not a place on its own.
    assert "公安" not in names(entities.places)


def test_counts_and_order(segmenter: Segmenter) -> None:
    text = "腾讯公司回应，腾讯公司股价下跌。北京、上海、北京的网友热议，马化腾未回应"
    entities = extract_entities(text, segmenter)
    assert entities.organizations == [Entity("腾讯公司", 2)]
    assert entities.places == [Entity("北京", 2), Entity("上海", 1)]
    assert entities.persons == [Entity("马化腾", 1)]


# --- dictionaries and taggers --------------------------------------------------------------


def test_user_words_of_the_segmenter_apply() -> None:
    segmenter = Segmenter()
    before = extract_entities("张大炮和舆情哨兵发布报告", segmenter)
    assert "张大炮" not in names(before.persons)
    segmenter.add_words([("张大炮", None, "nr"), ("舆情哨兵", None, "nt")])
    after = extract_entities("张大炮和舆情哨兵发布报告", segmenter)
    assert names(after.persons) == ["张大炮"]
    assert names(after.organizations) == ["舆情哨兵"]


def test_accepts_a_jieba_or_nothing() -> None:
    text = "北京市公安局朝阳分局通报，马化腾出席"
    with_jieba = extract_entities(text, rjieba.Jieba())
    default = extract_entities(text)
    assert with_jieba == default
    assert names(default.organizations) == ["北京市公安局朝阳分局"]


def test_hmm_off_misses_unknown_names(segmenter: Segmenter) -> None:
    text = "马云和李明见面"
    assert "李明" in names(extract_entities(text, segmenter).persons)
    assert "李明" not in names(extract_entities(text, segmenter, hmm=False).persons)


# --- storage ------------------------------------------------------------------------------


def test_to_dict_round_trip(segmenter: Segmenter) -> None:
    entities = extract_entities("马云在杭州市西湖区人民政府门口，马云说杭州很好", segmenter)
    data = json.loads(json.dumps(entities.to_dict(), ensure_ascii=False))
    assert data == {
        "persons": [{"name": "马云", "count": 2}],
        "organizations": [{"name": "杭州市西湖区人民政府", "count": 1}],
        "places": [{"name": "杭州", "count": 1}],
    }
    assert Entities.from_dict(data) == entities
    assert Entities.from_dict({}) == Entities()
    assert not Entities() and entities


# --- robustness ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", " ", "😀🎉🔥", "\x00\x01\x02\x7f\u200b", "\ud800\udfff", "。" * 1000, "a" * 5000]
)
def test_bad_input_does_not_crash(segmenter: Segmenter, text: str) -> None:
    assert extract_entities(text, segmenter) == Entities()


def test_names_among_control_characters_and_surrogates(segmenter: Segmenter) -> None:
    entities = extract_entities("\x00马化腾\x01在\ud800北京大学", segmenter)
    assert names(entities.persons) == ["马化腾"]
    assert names(entities.organizations) == ["北京大学"]


def test_huge_text_is_cut(segmenter: Segmenter) -> None:
    text = "马化腾在北京大学演讲。" * 30_000  # 330,000 characters
    started = time.perf_counter()
    entities = extract_entities(text, segmenter, max_chars=110_000)
    assert time.perf_counter() - started < 10
    assert entities.persons == [Entity("马化腾", 10_000)]
    assert entities.organizations == [Entity("北京大学", 10_000)]


def _ced_texts(limit: int) -> list[str]:
    """The original posts' texts; decoding only that field (lines carry ~40 KB of reposts)."""
    decoder = json.JSONDecoder()
    texts = []
    with gzip.open(CED, "rt", encoding="utf-8") as handle:
        for line in itertools.islice(handle, limit):
            at = line.find('"text": ')
            if at < 0:
                texts.append(json.loads(line).get("text") or "")
            else:
                texts.append(decoder.raw_decode(line, at + len('"text": '))[0])
    return texts


@pytest.mark.skipif(not CED.exists(), reason="CED data set not available")
def test_real_posts_smoke(segmenter: Segmenter) -> None:
    texts = [normalize(text) for text in _ced_texts(2000) if text]
    assert len(texts) >= 1500
    found = [extract_entities(text, segmenter) for text in texts]
    assert sum(1 for e in found if e.persons) >= 200
    assert sum(1 for e in found if e.organizations) >= 100
    assert sum(1 for e in found if e.places) >= 300
    for text, entities in zip(texts, found, strict=True):
        for entity in entities.persons + entities.organizations + entities.places:
            assert len(entity.name) >= 2 and entity.count >= 1
            assert entity.name in text
