"""Normalise text for matching, search and de-duplication.

Traditional Chinese becomes Simplified (opencc ``t2s``, phrase-aware), full-width forms become
half-width (NFKC), letters become lower case and whitespace runs become one space. The result is
for comparing texts, not for display.
"""

from __future__ import annotations

import unicodedata

import opencc

__all__ = ["normalize", "to_simplified"]

# One converter per process: loading the dictionaries takes milliseconds, converting a post
# microseconds. OpenCC's converter is immutable after construction (const C++ conversion over
# read-only dictionaries), so threads can share it without a lock.
_T2S = opencc.OpenCC("t2s")
_convert = _T2S.convert


def to_simplified(text: str) -> str:
    """`text` with Traditional Chinese converted to Simplified; nothing else changes."""
    # opencc only rewrites CJK characters: ASCII text needs no round trip through C++.
    if not text or text.isascii():
        return text
    return _convert(text)


def normalize(text: str) -> str:
    """Matching form of `text`: Simplified, NFKC (half-width), lower case, single spaces, stripped.

    >>> normalize("網絡輿情　ＡＢＣ１２３  Hello")
    '网络舆情 abc123 hello'
    """
    if not text:
        return ""
    if text.isascii():
        # NFKC and t2s are identities on ASCII; this path is ~10x faster.
        return " ".join(text.lower().split())
    # NFKC first: it maps full-width letters, the ideographic space and CJK compatibility
    # ideographs to their ordinary forms, which opencc's dictionaries then recognise.
    text = unicodedata.normalize("NFKC", text)
    # opencc on the whole text (not per character): its phrase dictionaries need context.
    text = _convert(text)
    # str.split() without arguments splits on every Unicode whitespace run.
    return " ".join(text.lower().split())
