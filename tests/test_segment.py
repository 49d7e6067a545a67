"""Segmentation with rjieba and an administrator's user dictionary."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tingfeng.analyze.normalize import normalize
from tingfeng.analyze.segment import Segmenter, read_user_dict


@pytest.fixture(scope="module")
def plain() -> Segmenter:
    return Segmenter()


def test_cut_returns_words_in_order(plain: Segmenter) -> None:
    assert plain.cut("我们今天去北京开会") == ["我们", "今天", "去", "北京", "开会"]
    assert "".join(plain.cut("网络舆情监测，平台上线！")) == "网络舆情监测，平台上线！"


def test_tokens_drop_whitespace_and_punctuation(plain: Segmenter) -> None:
    tokens = plain.tokens("网络舆情 监测,平台上线!!![蜡烛]……「好」😀 covid-19")
    assert tokens.split() == [
        "网络",
        "舆情",
        "监测",
        "平台",
        "上线",
        "蜡烛",
        "好",
        "😀",
        "covid",
        "19",
    ]


def test_empty_text(plain: Segmenter) -> None:
    assert plain.cut("") == []
    assert plain.tokens("") == ""
    assert plain.tokens("，。！ ") == ""


def test_user_dictionary_changes_the_cut(tmp_path: Path, plain: Segmenter) -> None:
    text = "东风镇卫生院发布通知"
    assert "东风镇卫生院" not in plain.cut(text)  # split without the dictionary
    user_dict = tmp_path / "words.txt"
    user_dict.write_text("# 地名\n东风镇卫生院\n", encoding="utf-8")
    segmenter = Segmenter(user_dict)
    assert segmenter.cut(text) == ["东风镇卫生院", "发布", "通知"]


def test_user_words_match_normalised_text(tmp_path: Path) -> None:
    # Written in Traditional and mixed case; the pipeline segments normalize()d text.
    user_dict = tmp_path / "words.txt"
    user_dict.write_text("東風鎮衛生院\nChatGPT研究院 50 nt\n", encoding="utf-8")
    segmenter = Segmenter(user_dict)
    text = normalize("東風鎮衛生院與ChatGPT研究院合作")
    assert segmenter.tokens(text).split() == ["东风镇卫生院", "与", "chatgpt研究院", "合作"]


def test_read_user_dict_formats(tmp_path: Path) -> None:
    user_dict = tmp_path / "words.txt"
    user_dict.write_text(
        "\ufeff# comment\n\n舆情监测平台 100 n\n东风镇卫生院\nC# nz\n应急管理局 7\n",
        encoding="utf-8",
    )
    assert read_user_dict(user_dict) == [
        ("舆情监测平台", 100, "n"),
        ("东风镇卫生院", None, None),
        ("C#", None, "nz"),
        ("应急管理局", 7, None),
    ]


def test_add_word_changes_the_cut() -> None:
    segmenter = Segmenter()
    assert "东风镇卫生院" not in segmenter.cut("东风镇卫生院通知")
    segmenter.add_word("东风镇卫生院")
    assert segmenter.cut("东风镇卫生院通知")[0] == "东风镇卫生院"
    assert ("东风镇卫生院", None, None) in segmenter.user_words


def test_add_words_keeps_earlier_user_words(tmp_path: Path) -> None:
    user_dict = tmp_path / "words.txt"
    user_dict.write_text("东风镇卫生院\n", encoding="utf-8")
    segmenter = Segmenter(user_dict)
    segmenter.add_words([("西山区应急管理局", None, None)])
    assert segmenter.cut("东风镇卫生院和西山区应急管理局") == [
        "东风镇卫生院",
        "和",
        "西山区应急管理局",
    ]


def test_add_word_while_other_threads_cut() -> None:
    # rjieba raises "Already borrowed" if its dictionary is changed during a cut; the
    # copy-on-write swap must make concurrent use safe.
    segmenter = Segmenter()
    text = "东风镇卫生院今天召开网络舆情监测工作会议。" * 200
    errors: list[BaseException] = []
    stop = threading.Event()

    def cut_forever() -> None:
        try:
            while not stop.is_set():
                segmenter.cut(text)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=cut_forever) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for number in range(3):
            segmenter.add_word(f"测试新词{number}")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert segmenter.cut("测试新词2")[0] == "测试新词2"
