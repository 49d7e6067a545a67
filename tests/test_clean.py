"""HTML to text and text cleaning: untrusted markup never survives, prose does."""

from __future__ import annotations

import pytest

from tingfeng.analyze.clean import clean_text, html_to_text, looks_like_html


def test_script_and_style_content_dropped_paragraph_text_kept() -> None:
    html = (
        "<html><head><title>标题</title><style>p{color:red}</style></head><body>"
        "<p>第一段文字</p><script>alert('偷cookie')</script><p>第二段文字</p></body></html>"
    )
    text = html_to_text(html)
    assert text == "第一段文字\n\n第二段文字"
    assert "alert" not in text and "color" not in text and "标题" not in text


@pytest.mark.parametrize(
    "tag", ["script", "style", "noscript", "template", "iframe", "svg", "object"]
)
def test_non_prose_elements_dropped_with_content(tag: str) -> None:
    text = html_to_text(f"<div>前<{tag}>隐藏内容</{tag}>后</div>")
    assert "隐藏内容" not in text
    assert text == "前后"


def test_blocks_and_br_become_line_breaks() -> None:
    html = "<div>甲</div><div>乙</div>丙<br>丁<ul><li>一</li><li>二</li></ul><h1>标题</h1>尾"
    assert html_to_text(html) == "甲\n乙\n丙\n丁\n\n一\n二\n\n标题\n\n尾"


def test_runs_of_blank_lines_collapse() -> None:
    html = "<p>a</p><p></p><p></p><p>b</p>c<br><br><br><br><br>d"
    assert html_to_text(html) == "a\n\nb\n\nc\n\nd"


def test_source_whitespace_collapses_like_a_browser() -> None:
    html = "<p>\n   一行\n   继续  \t 写</p>"
    assert html_to_text(html) == "一行 继续 写"


def test_entities_unescaped_once() -> None:
    text = html_to_text("<p>AT&amp;T &lt;b&gt;不是标签&lt;/b&gt; &nbsp;&#x4E2D;&#25991;</p>")
    # The entity-encoded "<b>" is literal text the author wrote; it stays text.
    assert text == "AT&T <b>不是标签</b> 中文"


def test_broken_html_repaired() -> None:
    text = html_to_text("<div><p>未闭合<b>粗体<div>嵌套</p></b>< 3 <i>斜体")
    assert "未闭合" in text and "粗体" in text and "嵌套" in text and "斜体" in text
    assert "<b>" not in text and "<i>" not in text and "<div>" not in text


def test_attributes_and_event_handlers_never_reach_the_text() -> None:
    html = (
        '<a href="javascript:alert(1)" onclick="steal()">链接</a>'
        '<img src=x onerror="alert(2)"><div style="background:url(javascript:x)">正文</div>'
    )
    text = html_to_text(html)
    assert text == "链接\n正文"
    for fragment in ("javascript", "onerror", "onclick", "alert", "<"):
        assert fragment not in text


def test_table_cells_do_not_run_together() -> None:
    text = html_to_text(
        "<table><tr><td>名称</td><td>数量</td></tr><tr><td>口罩</td><td>3</td></tr></table>"
    )
    assert text.splitlines() == ["名称 数量", "口罩 3"]


def test_pre_keeps_its_line_breaks() -> None:
    assert html_to_text("<pre>第一行\n第二行</pre>") == "第一行\n第二行"


def test_empty_and_markup_only_input() -> None:
    assert html_to_text("") == ""
    assert html_to_text("<script>x()</script><style>p{}</style>") == ""


def test_clean_text_removes_control_and_zero_width_characters() -> None:
    raw = "\ufeff舆\u200b情\u200d监\u2060测\x00\x07\u202e反转\x85"
    assert clean_text(raw) == "舆情监测反转"


def test_clean_text_normalises_newlines_and_trailing_spaces() -> None:
    raw = "第一行  \r\n第二行\t\r第三行\u2028第四行\n\n\n\n第五行 \n"
    assert clean_text(raw) == "第一行\n第二行\n第三行\n第四行\n\n第五行"


def test_clean_text_keeps_leading_indentation() -> None:
    assert clean_text("\u3000\u3000首行缩进的段落  ") == "\u3000\u3000首行缩进的段落"


def test_clean_text_routes_html_through_the_parser() -> None:
    assert clean_text("转发<br/>这条<script>evil()</script><b>消息</b>") == "转发\n这条消息"


def test_clean_text_leaves_tag_like_prose_alone() -> None:
    for text in ("找<康熙>或是<说文解字>", "1<2 且 3>2", "好好做人(>﹏&<)", "I <3 you"):
        assert not looks_like_html(text)
        assert clean_text(text) == text


def test_clean_text_decodes_entities_in_plain_text() -> None:
    assert clean_text("AT&amp;T &#20013;&#25991; &quot;引号&quot;") == 'AT&T 中文 "引号"'
