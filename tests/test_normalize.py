"""Normalisation for matching: Simplified, half-width, lower case, single spaces."""

from __future__ import annotations

import unicodedata

import opencc
import pytest

from tests.conftest import CED, ced_repost_texts
from tingfeng.analyze.normalize import normalize, to_simplified

_T2S = opencc.OpenCC("t2s")


def _reference(text: str) -> str:
    """The definition: NFKC, then OpenCC t2s, lower case, whitespace runs -> one space."""
    converted = _T2S.convert(unicodedata.normalize("NFKC", text))
    return " ".join(converted.lower().split())


@pytest.mark.parametrize(
    ("traditional", "simplified"),
    [
        ("網絡輿情監測與處置", "网络舆情监测与处置"),
        ("臺灣颱風過後，災區復原工作展開", "台湾台风过后,灾区复原工作展开"),
        ("這樣的頭髮很乾燥", "这样的头发很干燥"),
    ],
)
def test_traditional_matches_its_simplified_twin(traditional: str, simplified: str) -> None:
    assert normalize(traditional) == normalize(simplified)
    assert normalize(traditional) == simplified


def test_phrase_aware_conversion() -> None:
    # 乾 is 干 in 乾燥 but stays 乾 in the name 乾隆: only a phrase dictionary gets both right.
    assert normalize("乾隆年間 乾燥") == "乾隆年间 干燥"


def test_full_width_letters_digits_and_punctuation_become_half_width() -> None:
    assert normalize("ＡＢＣ１２３ｘｙｚ") == "abc123xyz"
    assert normalize("你好，世界！（测试）：？") == "你好,世界!(测试):?"


def test_whitespace_runs_collapse_and_ends_are_stripped() -> None:
    assert normalize("  舆情\t\t监测\n\n平台\u3000\u3000上线\xa0啦  ") == "舆情 监测 平台 上线 啦"


def test_lower_case() -> None:
    assert normalize("Hello WORLD iPhone") == "hello world iphone"
    assert normalize("ＣＨＡＴＧＰＴ来了") == "chatgpt来了"


def test_other_compatibility_forms() -> None:
    assert normalize("①②③") == "123"
    assert normalize("ﬁle") == "file"
    assert normalize("ｱﾘｶﾞﾄｳ") == "アリガトウ"
    assert normalize("𝐇𝐞𝐥𝐥𝐨") == "hello"
    # A combining sequence needs real NFKC composition, not a character map.
    assert normalize("cafe\u0301") == "café"


def test_empty_and_ascii() -> None:
    assert normalize("") == ""
    assert normalize("   ") == ""
    assert normalize("Plain  ASCII\ttext") == "plain ascii text"


def test_matches_the_reference_definition_on_mixed_text() -> None:
    samples = [
        "【轉發】ＹＡ～這樣快樂噢[愛你] http://t.cn/ABC　＠張三",
        "㈱东京 ㍿ ℃ № ™ … ¼",
        "\uf900\uf901 豈 更",  # CJK compatibility ideographs
        "Ｍｉｘｅｄ　全角　and 半角 ｶﾀｶﾅ",
        "한국어 텍스트 그리고 中文",
    ]
    for text in samples:
        assert normalize(text) == _reference(text), text


def test_to_simplified_changes_only_the_script() -> None:
    assert to_simplified("網絡輿情 ＡＢＣ Hello") == "网络舆情 ＡＢＣ Hello"
    assert to_simplified("") == ""
    assert to_simplified("ascii only") == "ascii only"


@pytest.mark.skipif(not CED.exists(), reason="shared CED data set not present")
def test_matches_the_reference_definition_on_real_weibo_reposts() -> None:
    texts = ced_repost_texts(20_000)
    mismatches = [text for text in texts if normalize(text) != _reference(text)]
    assert mismatches == []
