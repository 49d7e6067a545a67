"""Stored XSS: several hundred known payloads as collected posts, rendered by the main pages.

Every payload runs `top.__xss=N` if it ever executes. The pages are read twice:
- with the Content-Security-Policy switched off in the browser, so escaping and sanitising
  alone must keep every payload inert (CSP is the second wall, not the first);
- with the policy on, where the browser must report no violation at all: a violation would
  mean a payload reached the page as markup (or one of our own scripts lacks its nonce).
"""

from __future__ import annotations

import math

import pytest

from tests.conftest import push_source, screenshot, signed_in_page
from tests.xss_corpus import CORPUS

PROBE = "XSSPROBE"
# Recorded before any page script: CSP violations and dialogs (alert/confirm/prompt).
WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample || ""}`);
});
"""
# Elements a payload would add if it reached the page as markup.
INJECTED = """() => {
  const withHandler = [...document.querySelectorAll("*")].filter(
    (e) => [...e.attributes].some((a) => a.name.toLowerCase().startsWith("on")));
  const bad = document.querySelectorAll(
    "iframe, object, embed, base, meta[http-equiv], #xss, #xss2, #xssbtn, img[src='x'], " +
    "a[href^='javascript' i], form[action^='javascript' i], details[ontoggle], svg animate");
  return withHandler.length + bad.length;
}"""


@pytest.fixture
def corpus(web):  # type: ignore[no-untyped-def]
    """The payloads pushed as posts: one per title, and one post carrying all of them."""
    client, settings = web
    sid, token = push_source(settings, name=CORPUS[0][1])
    items = [
        {
            "id": f"x{n}",
            "title": f"{payload} {PROBE}",
            "text": f"{PROBE} {n} {payload}",
            "author": payload[:80],
            "url": f"javascript:top.__xss={n}",
        }
        for n, payload in CORPUS
    ]
    everything = "\n".join(p for _, p in CORPUS)
    items.append(
        {"id": "all", "title": f"{PROBE} all", "html": f"<p>{PROBE}</p>{everything}",
         "author": "<script>top.__xss=-1</script>"}
    )  # fmt: skip
    r = client.post(
        f"/api/v1/sources/{sid}/posts", headers={"Authorization": f"Bearer {token}"}, json=items
    )
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == len(items)
    hits = client.get("/api/v1/search", params={"q": f"{PROBE} all", "limit": 1}).json()["hits"]
    return client, hits[0]["id"]


def _pages(client, all_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    total = client.get("/api/v1/search", params={"q": PROBE, "count_only": True}).json()["count"]
    assert total == len(CORPUS) + 1
    pages = [f"/search?q={PROBE}&page={p}" for p in range(1, math.ceil(total / 20) + 1)]
    return ["/live", "/", *pages, f"/posts/{all_id}", "/sources"]


def _open(browser, client, *, csp: bool):  # type: ignore[no-untyped-def]
    page = signed_in_page(browser, client)
    if not csp:
        page.close()
        context = browser.new_context(bypass_csp=True, locale="zh-CN")
        context.add_cookies(
            [
                {"name": k, "value": v, "url": str(client.base_url)}
                for k, v in client.cookies.items()
            ]
        )
        page = context.new_page()
    page.add_init_script(WATCH)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    return page, dialogs


def test_no_payload_runs_with_escaping_alone(corpus, browser) -> None:  # type: ignore[no-untyped-def]
    client, all_id = corpus
    page, dialogs = _open(browser, client, csp=False)
    for path in _pages(client, all_id):
        page.goto(str(client.base_url) + path)
        page.wait_for_load_state("networkidle")
        page.mouse.move(200, 300)  # for the onmouseover payloads
        assert page.evaluate(INJECTED) == 0, f"markup from a post reached {path}"
        assert page.evaluate("top.__xss") is None, (
            f"payload {page.evaluate('top.__xss')} ran on {path}"
        )
    # The payloads are on the page, as text.
    assert CORPUS[0][1] in page.inner_text("body") or PROBE in page.inner_text("body")
    page.wait_for_timeout(1200)  # the timed payloads (animations, SMIL) had their chance
    assert page.evaluate("top.__xss") is None
    assert dialogs == []
    page.context.close()


def test_csp_reports_no_violation_on_the_pages(corpus, browser) -> None:  # type: ignore[no-untyped-def]
    client, all_id = corpus
    page, dialogs = _open(browser, client, csp=True)
    paths = _pages(client, all_id)
    for path in paths[:4] + paths[-2:]:
        page.goto(str(client.base_url) + path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__csp") == [], f"CSP violations on {path}"
        assert page.evaluate("top.__xss") is None
    screenshot(page, "xss_post_detail")
    assert dialogs == []
    page.close()
