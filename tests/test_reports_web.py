"""The reports page and API on a real server: making a report by API and by the page's form
(in Chromium), listing with the total, downloading the file, and who may make one."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
from playwright.sync_api import expect

from tests.conftest import add_person, screenshot, sign_in, signed_in_page


def this_year() -> int:
    return datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).year


def test_api_makes_lists_and_downloads_and_checks_roles(web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    r = client.post(
        "/api/v1/reports", json={"kind": "zero", "format": "html", "date": "2024-03-07"}
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert (
        made["kind"] == "zero"
        and made["zero"] is True
        and made["number"] == f"〔{this_year()}〕第1期"
    )
    assert made["created_by"] and made["snapshot"]["queries"]
    listed = client.get("/api/v1/reports", params={"kind": "zero"}).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == made["id"]
    assert client.get("/api/v1/reports", params={"kind": "daily"}).json()["total"] == 0
    file = client.get(f"/api/v1/reports/{made['id']}/download")
    assert file.status_code == 200 and file.headers["content-type"].startswith("text/html")
    assert "特此零报告" in file.text
    assert client.get("/api/v1/reports/999/download").status_code == 404
    bad = client.post("/api/v1/reports", json={"kind": "yearly"})
    assert bad.status_code == 422 and "yearly" in bad.json()["error"]
    special = client.post("/api/v1/reports", json={"kind": "special"})
    assert special.status_code == 422 and "event" in special.json()["error"]

    base = str(client.base_url)
    for username, role, allowed in (("ana", "analyst", True), ("han", "handler", False),
                                    ("vic", "viewer", False)):  # fmt: skip
        add_person(settings, username, role, "卫健局" if role == "handler" else None)
        with httpx.Client(base_url=base) as other:
            sign_in(other, username)
            r = other.post("/api/v1/reports", json={"kind": "zero", "format": "html"})
            assert (r.status_code == 201) is allowed, (username, r.status_code)
            assert other.get(f"/api/v1/reports/{made['id']}/download").status_code == 200


def test_page_form_makes_a_report_to_download(web, browser) -> None:  # type: ignore[no-untyped-def]
    from openpyxl import load_workbook

    client, _ = web
    page = signed_in_page(browser, client)  # type: ignore[attr-defined]
    page.goto(str(client.base_url) + "/reports")
    expect(page.locator("#event-field")).to_be_hidden()
    page.select_option("#report-kind", "special")
    expect(page.locator("#event-field")).to_be_visible()
    page.select_option("#report-kind", "weekly")
    page.fill("input[name=date]", "2024-03-05")
    page.select_option("select[name=format]", "xlsx")
    page.click("#report-form button[type=submit]")
    expect(page.locator("#made")).to_be_visible()
    row = page.locator("#reports tbody tr").first
    expect(row).to_contain_text("2024-W10")
    screenshot(page, "reports")
    # Downloaded by the browser, as a person would.
    with page.expect_download() as download_info:
        row.locator("a").first.click()
    download = download_info.value
    assert download.suggested_filename.endswith(".xlsx")
    wb = load_workbook(io.BytesIO(download.path().read_bytes()))
    assert wb.sheetnames[0] == "概况" and "趋势" in wb.sheetnames
    page.context.close()


def test_schedule_set_on_the_page_drives_the_clock(web) -> None:  # type: ignore[no-untyped-def]
    from tingfeng.db.engine import make_engine
    from tingfeng.reports.schedule import run_schedule

    client, settings = web
    assert client.get("/api/v1/reports/schedule").json()["source"] == "settings"
    bad = client.put("/api/v1/reports/schedule", json={"report_schedule": "daily@25:00"})
    assert bad.status_code == 422 and "KIND@HH:MM" in bad.json()["error"]
    ok = client.put(
        "/api/v1/reports/schedule", json={"report_schedule": "daily@00:00", "report_format": "html"}
    )
    assert ok.status_code == 200, ok.text
    shown = client.get("/api/v1/reports/schedule").json()
    assert shown["report_schedule"] == "daily@00:00" and shown["source"] == "page"
    assert 'value="daily@00:00"' in client.get("/reports").text
    add_person(settings, "ana", "analyst")
    with httpx.Client(base_url=str(client.base_url)) as other:
        sign_in(other, "ana")
        refused = other.put("/api/v1/reports/schedule", json={"report_schedule": ""})
        assert refused.status_code == 403
    # The settings file has no schedule: the page's is the one the clock follows.
    assert not settings.report_schedule.strip()
    engine = make_engine(settings.database_url)
    made = run_schedule(engine, settings, datetime.now(UTC))
    engine.dispose()
    assert [m.record["format"] for m in made] == ["html"]
    listed = client.get("/api/v1/reports").json()["items"]
    assert listed[0]["created_by"] == "schedule"
