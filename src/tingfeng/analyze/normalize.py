"""Normalise text for matching, search and de-duplication.

Traditional Chinese becomes Simplified (opencc ``t2s``, phrase-aware), full-width and other
compatibility forms become their ordinary forms (NFKC), letters become lower case and whitespace
runs become one space. The result is for comparing texts, not for display.
"""

from __future__ import annotations

import json
import logging
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path

import opencc

__all__ = ["normalize", "to_simplified"]

log = logging.getLogger(__name__)

# Code points whose NFKC form is worth folding into the OpenCC pass: the BMP (full-width forms,
# circled numbers, ligatures, half-width katakana, ...) plus the astral blocks with NFKC
# mappings that turn up in posts (mathematical alphanumerics used as "fancy fonts", enclosed
# alphanumerics, CJK compatibility ideographs). Anything missed is caught by the NFKC check.
_NFKC_RANGES = (
    range(0x00A0, 0xD800),
    range(0xE000, 0x10000),
    range(0x1D400, 0x1D800),
    range(0x1F100, 0x1F300),
    range(0x2F800, 0x2FA20),
)


def _nfkc_table() -> str:
    """OpenCC text dictionary (``char<TAB>replacement`` lines) of single-character NFKC maps.

    Combining marks are left out (they compose with their neighbour, which a character map
    cannot do) and so are replacements containing spaces (OpenCC uses spaces to separate
    alternatives; str.split() in `normalize` treats such characters as spaces anyway).
    """
    lines = []
    for block in _NFKC_RANGES:
        for code in block:
            char = chr(code)
            folded = unicodedata.normalize("NFKC", char)
            if (
                folded != char
                and not unicodedata.category(char).startswith("M")
                and not any(c.isspace() for c in folded)
            ):
                lines.append(f"{char}\t{folded}\n")
    return "".join(lines)


def _build_converters() -> tuple[Callable[[str], str], Callable[[str], str]]:
    """(t2s converter, t2s+NFKC converter).

    NFKC through unicodedata costs ~0.2 µs per character on Chinese text with full-width
    punctuation (slower than t2s itself); OpenCC applies the same character map in its C++
    pass at almost no cost, which makes `normalize` ~2.5x faster on 100-character posts.
    Built from a generated config in a temporary directory (OpenCC reads it at construction);
    if that fails, normalisation is still correct, only slower.
    """
    t2s = opencc.OpenCC("t2s")
    share = Path(opencc.__file__).parent / "clib" / "share" / "opencc"
    try:
        base = json.loads((share / "t2s.json").read_text(encoding="utf-8"))

        def absolute(node: object) -> None:
            # Dictionary paths in t2s.json are relative to its directory; ours lives elsewhere.
            if isinstance(node, dict):
                if isinstance(node.get("file"), str):
                    node["file"] = str(share / node["file"])
                for value in node.values():
                    absolute(value)
            elif isinstance(node, list):
                for value in node:
                    absolute(value)

        absolute(base)
        with tempfile.TemporaryDirectory(prefix="tingfeng-opencc-") as tmp:
            table = Path(tmp) / "nfkc.txt"
            table.write_text(_nfkc_table(), encoding="utf-8")
            base["name"] = "t2s with NFKC character folding (Tingfeng)"
            folding = {"dict": {"type": "text", "file": str(table)}}
            base["normalization"] = [folding, *base.get("normalization", [])]
            config = Path(tmp) / "t2s_nfkc.json"
            config.write_text(json.dumps(base, ensure_ascii=False), encoding="utf-8")
            folded = opencc.OpenCC(str(config))
        return t2s.convert, folded.convert
    except Exception:  # any OpenCC/config problem: fall back to plain t2s + unicodedata
        log.warning("OpenCC NFKC folding unavailable; using unicodedata (slower)", exc_info=True)
        return t2s.convert, t2s.convert


# One set of converters per process: loading takes ~30 ms, converting a post microseconds.
# OpenCC converters are immutable after construction (const C++ conversion over read-only
# dictionaries), so threads share them without a lock.
_to_simplified, _to_simplified_folded = _build_converters()
_is_normalized = unicodedata.is_normalized


def to_simplified(text: str) -> str:
    """`text` with Traditional Chinese converted to Simplified; nothing else changes."""
    # opencc only rewrites CJK characters: ASCII text needs no round trip through C++.
    if not text or text.isascii():
        return text
    return _to_simplified(text)


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
    # One OpenCC pass over the whole text (its phrase dictionaries need context): NFKC
    # character folding first, then Traditional -> Simplified.
    text = _to_simplified_folded(text)
    # Full NFKC for what a character map cannot do (combining sequences, unlisted blocks);
    # the quick check makes this free for almost every post. NFKC after the character folding
    # equals NFKC of the original, because both decompose to the same sequence.
    if not _is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    # str.split() without arguments splits on every Unicode whitespace run (incl. U+3000).
    return " ".join(text.lower().split())
