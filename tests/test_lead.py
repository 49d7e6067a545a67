"""Leads submitted by hand: a link read through the guarded fetcher, or pasted text."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.loopback import LoopbackServer, Reply
from tingfeng.collect.connectors.base import CollectContext, connector_kinds, get_connector
from tingfeng.collect.connectors.lead import lead_item
from tingfeng.collect.errors import CollectError
from tingfeng.collect.fetcher import Fetcher
from tingfeng.settings import Settings

WEB = Path(__file__).parent / "fixtures" / "web"


def test_lead_from_a_link(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/a/1002.html", Reply(body=(WEB / "article_1002.html").read_bytes()))
    url = loopback.url("/a/1002.html")
    item = lead_item(fetcher, url=url, submitted_by="鼓楼街道 王芳", note="居民群里转发较多")
    assert item.kind == "article"
    assert item.url == url
    assert item.title == "我市启动老旧小区改造民意征集"
    assert "加装电梯、雨污分流" in item.text
    assert item.published_at == datetime(2024, 3, 6, 14, 20)
    assert item.extra == {"lead": True, "submitted_by": "鼓楼街道 王芳", "note": "居民群里转发较多"}


def test_lead_from_pasted_text() -> None:
    item = lead_item(
        None, text="  网传某小区停水三天无人管，已核实为管网抢修。 ", submitted_by="李强"
    )
    assert item.kind == "post"
    assert item.url is None
    assert item.text == "网传某小区停水三天无人管，已核实为管网抢修。"
    assert item.extra == {"lead": True, "submitted_by": "李强"}


def test_pasted_text_wins_over_the_page(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    loopback.route("/login-wall", Reply(body=(WEB / "article_1003.html").read_bytes()))
    item = lead_item(
        fetcher, url=loopback.url("/login-wall"), text="原帖内容：山上有人烧纸", submitted_by="张三"
    )
    assert item.text == "原帖内容：山上有人烧纸"
    assert item.title == "春季森林防火形势严峻 全市进入高火险期"


def test_failed_link_with_pasted_text(loopback: LoopbackServer, fetcher: Fetcher) -> None:
    url = loopback.url("/deleted")
    item = lead_item(fetcher, url=url, text="帖子已被删除，截图文字：……", submitted_by="张三")
    assert item.kind == "article" and item.url == url
    assert item.text == "帖子已被删除，截图文字：……"
    assert "404" in item.extra["fetch_error"]
    with pytest.raises(CollectError, match="404"):
        lead_item(fetcher, url=url, submitted_by="张三")


def test_the_ssrf_guard_applies(loopback: LoopbackServer, settings: Settings) -> None:
    loopback.route("/internal", Reply(body=b"<html><body><p>secret</p></body></html>"))
    strict = settings.model_copy(update={"fetch_allowed_networks": []})
    with Fetcher(strict) as guarded, pytest.raises(CollectError):
        lead_item(guarded, url=loopback.url("/internal"), submitted_by="someone")
    assert loopback.hits("/internal") == 0


def test_bad_leads() -> None:
    with pytest.raises(CollectError, match="link or some text"):
        lead_item(None, submitted_by="张三")
    with pytest.raises(CollectError, match="who submitted"):
        lead_item(None, text="x", submitted_by=" ")
    with pytest.raises(CollectError, match="not an http"):
        lead_item(None, url="file:///etc/passwd", submitted_by="张三")


def test_lead_source_collects_nothing_on_schedule() -> None:
    kinds = connector_kinds()
    assert {"feed", "board", "site_search", "json_api", "lead"} <= set(kinds)
    connector = get_connector("lead", {})
    assert kinds["lead"].uses_network is False
    assert list(connector.collect(CollectContext())) == []
