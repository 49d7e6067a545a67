"""The main pages fit a laptop screen and a tablet: nothing wider than the window."""

from __future__ import annotations

from tests.conftest import screenshot, signed_in_page

PAGES = [
    "/", "/live", "/search?q=医院", "/sources", "/topics", "/events", "/alerts",
    "/alerts/rules", "/alerts/channels", "/cases", "/ledger", "/reports", "/duty",
    "/board/office", "/admin/users", "/admin/privacy",
]  # fmt: skip
SCREENS = {"laptop": (1366, 768), "tablet": (768, 1024)}
# How far the page is wider than the window (0: it fits).
OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


def test_main_pages_fit_laptop_and_tablet(web, browser) -> None:  # type: ignore[no-untyped-def]
    client, _settings = web
    page = signed_in_page(browser, client)
    too_wide = []
    for screen, (width, height) in SCREENS.items():
        page.set_viewport_size({"width": width, "height": height})
        for path in PAGES:
            response = page.goto(str(client.base_url) + path)
            assert response is not None and response.status == 200, path
            page.wait_for_load_state("networkidle")
            if (extra := page.evaluate(OVERFLOW)) > 1:
                too_wide.append(f"{path} on a {screen}: {extra}px too wide")
        page.goto(str(client.base_url) + "/")
        screenshot(page, f"overview_{screen}")
    page.set_viewport_size({"width": 768, "height": 1024})
    page.goto(str(client.base_url) + "/cases")
    screenshot(page, "cases_board_tablet")
    page.context.close()
    assert not too_wide, "\n".join(too_wide)
