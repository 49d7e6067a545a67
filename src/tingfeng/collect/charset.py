"""Finding the encoding of a page or feed, for sites that declare it wrongly or not at all.

Chinese sites often declare gb2312 while using GBK or GB18030 characters, send a utf-8 header on
a GBK page, or say nothing. So a declaration is only believed when the bytes decode with it.
"""

from __future__ import annotations

import codecs
import re

import charset_normalizer

# Declared names that are mapped to a superset, so that characters beyond the declared set
# (common on real pages) still decode.
_ALIASES = {
    "gb2312": "gb18030",
    "gb_2312": "gb18030",
    "gb_2312-80": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "ms936": "gb18030",
    "windows-936": "gb18030",
    "euc-cn": "gb18030",
    "euccn": "gb18030",
    "csgb2312": "gb18030",
    "chinese": "gb18030",
    "big5": "big5hkscs",
    "big5-hkscs": "big5hkscs",
    "x-x-big5": "big5hkscs",
    "csbig5": "big5hkscs",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    # Browsers read these labels as windows-1252; so do we.
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin-1": "cp1252",
    "latin1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
}

# Encodings that decode (nearly) any byte string, so "it decodes" proves nothing: they are used
# only when detection finds nothing better.
_PERMISSIVE = frozenset({"cp1252", "iso8859-1", "latin-1"})

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

_META_CHARSET = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
_XML_ENCODING = re.compile(
    rb"""^\s*<\?xml[^>]{0,200}?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""", re.I
)

_SNIFF_BYTES = 4096
# Detection looks at the start of the document only: enough to judge, and bounded in time.
_DETECT_BYTES = 64 * 1024
# A declared encoding survives a few broken bytes (truncated copy-paste, one bad character)
# but not the flood of errors that a wrong declaration produces.
_ERROR_TOLERANCE = 0.01
_ASCII = bytes(range(0x80))
# Detection on short texts is a close call between many codecs; within this margin of "chaos"
# these are preferred, in this order: the sites this tool watches are mostly Chinese.
_PREFERRED = ("gb18030", "big5hkscs", "cp1252")
_PREFERENCE_MARGIN = 0.05
# Detected encodings that may override a permissive declaration such as iso-8859-1 (the default
# header of many servers in front of GBK pages).
_MULTIBYTE = frozenset({"gb18030", "big5hkscs", "cp932", "cp949", "euc_jp", "utf-8"})


def normalise(name: str | None) -> str | None:
    """The Python codec for an encoding label, mapped to a superset; None if unknown."""
    if not name:
        return None
    label = name.strip().strip("\"'").lower()
    label = _ALIASES.get(label, label)
    try:
        codec = codecs.lookup(label).name
    except LookupError:
        return None
    if codec in {"utf_8", "utf8"}:
        return "utf-8"
    return _ALIASES.get(codec, codec)


def sniff_declared(sample: bytes) -> str | None:
    """The charset declared inside the document (`<meta charset>` or `<?xml encoding>`), if any."""
    head = sample[:_SNIFF_BYTES]
    match = _XML_ENCODING.search(head) or _META_CHARSET.search(head)
    if not match:
        return None
    return match.group(1).decode("ascii", "replace")


def _bom_encoding(sample: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if sample.startswith(bom):
            return encoding
    return None


def _fits(sample: bytes, encoding: str) -> bool:
    """True when `sample` decodes with `encoding`, allowing a rare broken byte."""
    try:
        factory = codecs.getincrementaldecoder(encoding)
    except LookupError:
        return False
    # Incremental, not final: a sample cut in the middle of a character is not an error.
    try:
        factory(errors="strict").decode(sample, final=False)
        return True
    except UnicodeDecodeError:
        pass
    non_ascii = len(sample.translate(None, _ASCII))
    text = factory(errors="replace").decode(sample, final=False)
    return text.count("\ufffd") <= non_ascii * _ERROR_TOLERANCE


def _ascii_compatible(encoding: str) -> bool:
    # Rules out EBCDIC and UTF-16 guesses, which turn markup into garbage.
    try:
        return _ASCII.decode(encoding) == _ASCII.decode("ascii")
    except (LookupError, UnicodeDecodeError):
        return False


def _detect(sample: bytes) -> str | None:
    """charset_normalizer's guess, leaning to the preferred encodings when nearly as good."""
    matches = [
        match
        for match in charset_normalizer.from_bytes(sample[:_DETECT_BYTES])
        # UTF-16 without a BOM is guessed for plain CJK bytes; real UTF-16 HTML has NULs.
        if (match.encoding.startswith(("utf_16", "utf_32")) and b"\x00" in sample)
        or _ascii_compatible(match.encoding)
    ]
    if not matches:
        return None
    best = matches[0]
    # Short Chinese texts are often taken for Korean, short French for Farsi.
    preferred = [
        (match.chaos, _PREFERRED.index(encoding), encoding)
        for match in matches
        if (encoding := normalise(match.encoding)) in _PREFERRED
        and match.chaos <= best.chaos + _PREFERENCE_MARGIN
    ]
    if preferred:
        return min(preferred)[2]
    return normalise(best.encoding)


def detect_encoding(sample: bytes, declared: str | None = None) -> str:
    """The encoding to decode `sample` with: BOM, then a declaration that fits, then detection."""
    bom = _bom_encoding(sample)
    if bom:
        return bom
    candidates: list[str] = []
    for label in (declared, sniff_declared(sample)):
        encoding = normalise(label)
        # A document that managed to declare utf-16 in ASCII bytes is not utf-16.
        if encoding and encoding.startswith(("utf-16", "utf-32")):
            encoding = "utf-8"
        if encoding and encoding not in candidates:
            candidates.append(encoding)
    if sample.isascii():
        return candidates[0] if candidates else "utf-8"
    # Checked before any declaration: non-ASCII text that is valid UTF-8 is never an accident,
    # while UTF-8 bytes often also pass as GB18030 (pages copied to a new CMS keep old meta).
    if _fits(sample, "utf-8"):
        return "utf-8"
    for encoding in candidates:
        if encoding not in _PERMISSIVE and _fits(sample, encoding):
            return encoding
    detected = _detect(sample)
    if detected in {None, "ascii", "utf-8"}:
        detected = None
    permissive = [encoding for encoding in candidates if encoding in _PERMISSIVE]
    if permissive and (detected is None or detected not in _MULTIBYTE):
        return permissive[0]
    return detected or "utf-8"


def decode(content: bytes, declared: str | None = None) -> tuple[str, str]:
    """`(text, encoding)` of `content`; never raises, drops a BOM, replaces undecodable bytes."""
    try:
        encoding = detect_encoding(content, declared)
        text = content.decode(encoding, errors="replace")
    except Exception:  # a codec bug must not lose the page
        encoding = "utf-8"
        text = content.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, encoding
