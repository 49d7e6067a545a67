"""Encoding detection on the kinds of pages Chinese sites really serve."""

from __future__ import annotations

import codecs

import pytest

from tingfeng.collect.charset import decode, detect_encoding, normalise, sniff_declared

SIMPLIFIED = (
    "舆情监测平台每天收集新闻、论坛和社交媒体上的公开信息，帮助机构及时了解公众关注的热点问题。"
)
TRADITIONAL = (
    "輿情監測平台每天收集新聞、論壇和社交媒體上的公開信息，幫助機構及時了解公眾關注的熱點問題。"
)
# 镕 and 喆 are GBK but not GB2312; 𠮷 needs GB18030's four-byte form.
BEYOND_GB2312 = "朱镕基与陶喆，还有𠮷野家。"


def html(body: str, encoding: str, meta: str | None = None) -> bytes:
    head = f'<meta charset="{meta}">' if meta else ""
    page = f"<html><head>{head}<title>新聞</title></head><body><p>{body}</p></body></html>"
    return page.encode(encoding)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("gb2312", "gb18030"),
        ("GBK", "gb18030"),
        ("x-gbk", "gb18030"),
        ("big5", "big5hkscs"),
        ("UTF8", "utf-8"),
        ("'utf-8'", "utf-8"),
        ("iso-8859-1", "cp1252"),
        ("no-such-charset", None),
        (None, None),
    ],
)
def test_normalise_maps_aliases_to_supersets(label: str | None, expected: str | None) -> None:
    assert normalise(label) == expected


def test_gbk_page_with_header() -> None:
    content = html(SIMPLIFIED, "gbk")
    assert detect_encoding(content, "gbk") == "gb18030"
    assert decode(content, "gbk")[0].count(SIMPLIFIED) == 1


def test_gbk_page_without_any_declaration() -> None:
    text, encoding = decode(html(SIMPLIFIED, "gbk"))
    assert encoding == "gb18030"
    assert SIMPLIFIED in text


def test_big5_page_declared_in_meta() -> None:
    content = html(TRADITIONAL, "big5", meta="big5")
    text, encoding = decode(content)
    assert encoding == "big5hkscs"
    assert TRADITIONAL in text


def test_big5_page_without_declaration() -> None:
    text, encoding = decode(html(TRADITIONAL, "big5"))
    assert encoding == "big5hkscs"
    assert TRADITIONAL in text


def test_gb18030_characters_on_a_page_declared_gb2312() -> None:
    content = html(BEYOND_GB2312 + SIMPLIFIED, "gb18030", meta="gb2312")
    text, encoding = decode(content)
    assert encoding == "gb18030"
    assert BEYOND_GB2312 in text


def test_utf8_without_bom_or_declaration() -> None:
    text, encoding = decode(html(SIMPLIFIED, "utf-8"))
    assert encoding == "utf-8"
    assert SIMPLIFIED in text


def test_utf8_bom_is_used_and_stripped() -> None:
    content = codecs.BOM_UTF8 + html(SIMPLIFIED, "utf-8")
    text, encoding = decode(content, "gbk")  # the BOM wins over a wrong header
    assert encoding == "utf-8-sig"
    assert text.startswith("<html>")
    assert SIMPLIFIED in text


def test_utf16_bom() -> None:
    text, encoding = decode(codecs.BOM_UTF16_LE + "<p>你好</p>".encode("utf-16-le"))
    assert encoding == "utf-16"
    assert text == "<p>你好</p>"


def test_utf8_declared_but_really_gbk() -> None:
    content = html(SIMPLIFIED, "gbk", meta="utf-8")
    text, encoding = decode(content, "utf-8")
    assert encoding == "gb18030"
    assert SIMPLIFIED in text


def test_gbk_declared_but_really_utf8() -> None:
    text, encoding = decode(html(SIMPLIFIED, "utf-8", meta="gbk"), "gbk")
    assert encoding == "utf-8"
    assert SIMPLIFIED in text


def test_xml_feed_declaring_gbk() -> None:
    feed = (
        '<?xml version="1.0" encoding="gbk"?>\n'
        f"<rss><channel><item><title>{SIMPLIFIED}</title></item></channel></rss>"
    ).encode("gbk")
    assert sniff_declared(feed) == "gbk"
    text, encoding = decode(feed)
    assert encoding == "gb18030"
    assert SIMPLIFIED in text


def test_http_equiv_meta_is_sniffed() -> None:
    page = b'<meta http-equiv="Content-Type" content="text/html; charset=GB2312">'
    assert sniff_declared(page) == "GB2312"


def test_latin1_header_in_front_of_a_gbk_page() -> None:
    text, encoding = decode(html(SIMPLIFIED, "gbk"), "iso-8859-1")
    assert encoding == "gb18030"
    assert SIMPLIFIED in text


def test_real_latin1_page() -> None:
    text, encoding = decode("<p>Le café crème est très bon.</p>".encode("latin-1"), "iso-8859-1")
    assert encoding == "cp1252"
    assert "café crème" in text


def test_a_stray_broken_byte_keeps_the_declared_encoding() -> None:
    body = (SIMPLIFIED * 5).encode("gbk")
    content = body[:100] + b"\xff" + body[100:]
    text, encoding = decode(content, "gbk")
    assert encoding == "gb18030"
    assert SIMPLIFIED in text


def test_sample_cut_inside_a_character_still_matches() -> None:
    sample = html(SIMPLIFIED, "gbk", meta="gbk")
    cut = sample[: sample.index(b"</p>") - 1]  # ends with half a character
    assert detect_encoding(cut) == "gb18030"


def test_ascii_and_empty_never_fail() -> None:
    assert decode(b"") == ("", "utf-8")
    assert decode(b"plain ascii", "gbk") == ("plain ascii", "gb18030")
    text, _encoding = decode(b"\x80\x81\xfe\xff" * 3, "no-such-charset")
    assert isinstance(text, str)
