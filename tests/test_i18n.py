"""The pages' languages: no bare text in templates, a complete English catalogue, the switch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from tingfeng.web.i18n import negotiate

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "src" / "tingfeng" / "web" / "templates"
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]+")
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)


def test_templates_have_no_text_outside_gettext() -> None:
    bare: list[str] = []
    for template in sorted(TEMPLATES.glob("*.html")):
        source = template.read_text("utf-8")
        # Blank out Jinja blocks but keep the line breaks, so the line numbers stay right.
        stripped = JINJA.sub(lambda m: "\n" * m.group(0).count("\n"), source)
        for number, line in enumerate(stripped.splitlines(), 1):
            for text in CJK.findall(line):
                bare.append(f"{template.name}:{number}: {text}")
    assert not bare, "text not passed through _():\n" + "\n".join(bare[:40])


def test_english_catalogue_translates_every_string() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "i18n.py"), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]


def test_language_choice_order() -> None:
    assert negotiate(None, None, "") == "zh_CN"
    assert negotiate(None, None, "en-US,en;q=0.9") == "en"
    assert negotiate(None, None, "fr;q=1, zh-TW;q=0.8, en;q=0.5") == "zh_CN"
    assert negotiate(None, "en", "zh-CN") == "en"
    assert negotiate("zh_CN", "en", "en") == "zh_CN"
    assert negotiate("xx", None, "en") == "en"


def test_switch_to_english_sticks_and_keeps_escaping(web) -> None:  # type: ignore[no-untyped-def]
    client, _settings = web
    chinese = client.get("/cases")
    assert '<html lang="zh-CN">' in chinese.text and "处理单" in chinese.text
    english = client.get("/cases?lang=en")
    assert english.status_code == 200
    assert '<html lang="en">' in english.text
    assert "Cases" in english.text and "处理单" not in english.text
    assert "tf_lang=en" in english.headers["set-cookie"]
    # The cookie keeps the choice on the next page; the browser's language is the fallback.
    assert '<html lang="en">' in client.get("/").text
    client.cookies.delete("tf_lang")
    fresh = httpx.get(str(client.base_url) + "/login", headers={"Accept-Language": "en-GB,en"})
    assert '<html lang="en">' in fresh.text and "Sign in" in fresh.text
    assert '<html lang="zh-CN">' in httpx.get(str(client.base_url) + "/login").text


def test_switching_to_english_in_the_browser(web, browser) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    from tests.conftest import screenshot, signed_in_page

    client, _settings = web
    page = signed_in_page(browser, client)
    page.goto(str(client.base_url) + "/")
    expect(page.locator("header nav")).to_contain_text("态势总览")
    screenshot(page, "overview")
    page.click("header a[data-lang='en']")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("header nav")).to_contain_text("Overview")
    expect(page.locator("h2").first).to_contain_text("Overview")
    # Labels drawn by the page's script are English too, and the choice holds on other pages.
    expect(page.locator("#ov-events")).to_contain_text("No active events")
    screenshot(page, "overview_en")
    page.goto(str(client.base_url) + "/cases")
    expect(page.locator("header nav")).to_contain_text("Cases")
    page.click("header a[data-lang='zh_CN']")
    expect(page.locator("header nav")).to_contain_text("处理单")
    page.context.close()
