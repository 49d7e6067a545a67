"""The pages of cases and of the message board's office view, against the real server: the
board of cases by stage of work (columns, department scope, filters, overdue cards), the case
page's actions by role, the office's view of the public board (listing, marking with a reason,
opening a case, the roles that may), and one run in Chromium from a message on the public board
to a card on the cases board."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from tests.conftest import add_person, screenshot, sign_in, signed_in_page
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.settings import Settings

CONTACT = "13800001111"


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The message board on (or off with the `indirect` parameter False)."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'tf.db'}",
        data_dir=tmp_path / "var",
        board_enabled=getattr(request, "param", True),
        board_title="某某县网上留言板",
    )


@contextmanager
def signed_in(client: httpx.Client, username: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=str(client.base_url), timeout=30) as other:
        sign_in(other, username)
        yield other


def office(settings: Settings) -> dict[str, int]:
    """An office: 县委网信办 with 城管局 and 卫健局 under it, an analyst, an approver at the top,
    a handler in each bureau and a viewer; five cases in different stages. Returns case ids."""
    from tingfeng.cases.service import act, open_case
    from tingfeng.office.people import add_department, find_user

    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        add_department(conn, "县委网信办")
        add_department(conn, "城管局", parent="县委网信办")
        add_department(conn, "卫健局", parent="县委网信办")
    engine.dispose()
    add_person(settings, "ana", "analyst")
    add_person(settings, "boss", "approver", "县委网信办")
    add_person(settings, "cg", "handler", "城管局")
    add_person(settings, "wj", "handler", "卫健局")
    add_person(settings, "kan", "viewer")
    engine = make_engine(settings.database_url)
    ids: dict[str, int] = {}
    with write_transaction(engine) as conn:
        ana, boss, cg = (find_user(conn, n) for n in ("ana", "boss", "cg"))

        def case(title: str, level: str = "general", **kw: object) -> int:
            return open_case(conn, ana, settings, title=title, level=level, **kw)  # type: ignore[arg-type]

        def assigned(cid: int, department: str) -> int:
            act(conn, ana, settings, cid, "assess", handling="交办核实")
            act(conn, boss, settings, cid, "approve_handling")
            act(conn, ana, settings, cid, "assign", department=department)
            return cid

        ids["new"] = case("新登记的舆情", "critical")
        ids["assessed"] = case("待审批的舆情")
        act(conn, ana, settings, ids["assessed"], "assess", handling="建议交办")
        ids["cg"] = assigned(case("某路段占道经营", "serious"), "城管局")
        act(conn, cg, settings, ids["cg"], "accept")
        ids["wj"] = assigned(case("医院收费不透明", "major"), "卫健局")
        # Opened three days ago at the critical level: its first deadline (1 hour) is long past.
        ids["late"] = case(
            "三天前的特大舆情", "critical", now=datetime.now(UTC) - timedelta(days=3)
        )
    engine.dispose()
    return ids


def columns(html: str) -> dict[str, list[int]]:
    """The board's columns and the case ids of their cards, top to bottom."""
    tree = HTMLParser(html)
    return {
        col.attributes["data-column"] or "": [
            int(card.attributes["data-case"] or 0) for card in col.css("article.kcard")
        ]
        for col in tree.css("#kanban .kcol")
    }


def test_the_board_puts_each_case_in_its_column_and_a_handler_sees_only_their_department(
    web: tuple[httpx.Client, Settings],
) -> None:
    client, settings = web
    ids = office(settings)
    cols = columns(client.get("/cases").text)
    assert list(cols) == ["intake", "approval", "handling", "reply", "published", "closed"]
    # The most serious first, then the nearest deadline (the overdue one).
    assert cols["intake"] == [ids["late"], ids["new"]]
    assert cols["approval"] == [ids["assessed"]]
    assert cols["handling"] == [ids["wj"], ids["cg"]]  # 重大 before 较大
    assert cols["reply"] == cols["published"] == cols["closed"] == []
    page = HTMLParser(client.get("/cases").text)
    card = page.css_first(f'article[data-case="{ids["cg"]}"]')
    assert card is not None and "城管局" in card.text() and "经办 cg" in card.text()

    with signed_in(client, "cg") as cg:
        mine = columns(cg.get("/cases").text)
        # Only 城管局's case: not 卫健局's, not the ones no department holds yet.
        assert [i for col in mine.values() for i in col] == [ids["cg"]]
        assert cg.get(f"/cases/{ids['wj']}").status_code == 403
        assert columns(cg.get("/cases", params={"show": "mine"}).text)["handling"] == [ids["cg"]]
        # The case page offers the handler only what a handler may do now.
        form_actions = [
            f.attributes["data-action"]
            for f in HTMLParser(cg.get(f"/cases/{ids['cg']}").text).css("#case-actions form")
        ]
        assert form_actions == ["submit_reply"]
    with signed_in(client, "wj") as wj:
        assert [i for col in columns(wj.get("/cases").text).values() for i in col] == [ids["wj"]]
    with signed_in(client, "kan") as viewer:
        page = viewer.get(f"/cases/{ids['new']}").text
        assert 'id="no-actions"' in page and 'id="draft-reply"' not in page
        assert 'id="new-case"' not in viewer.get("/cases").text

    # Filters: level and origin narrow the board; the list view is still there.
    critical = columns(client.get("/cases", params={"level": "critical"}).text)
    assert sorted(i for col in critical.values() for i in col) == sorted([ids["new"], ids["late"]])
    assert not any(columns(client.get("/cases", params={"origin": "board"}).text).values())
    listed = client.get("/cases", params={"view": "list"}).text
    assert 'id="cases"' in listed and 'id="kanban"' not in listed
    assert len(HTMLParser(listed).css("#cases tr[data-case]")) == 5
    assert 'data-state="assessed"' in client.get("/cases", params={"state": "assessed"}).text


def test_a_card_counts_down_to_its_deadline_and_shows_overdue(
    web: tuple[httpx.Client, Settings],
) -> None:
    from tingfeng.web.case_pages import countdown

    client, settings = web
    ids = office(settings)
    page = HTMLParser(client.get("/cases").text)
    late = page.css_first(f'article[data-case="{ids["late"]}"] .due')
    fresh = page.css_first(f'article[data-case="{ids["assessed"]}"] .due')
    assert late is not None and "overdue" in (late.attributes["class"] or "")
    assert "超期" in late.text() and "天" in late.text()
    assert fresh is not None and "overdue" not in (fresh.attributes["class"] or "")
    assert "剩" in fresh.text()
    # The case page counts down its open deadlines the same way.
    case = HTMLParser(client.get(f"/cases/{ids['late']}").text)
    overdue = case.css("#deadlines td.overdue[data-due]")
    assert overdue and "超期" in overdue[0].text()
    assert countdown(-(2 * 3600 + 5 * 60)) == "超期 2 小时 5 分"
    assert countdown(26 * 3600) == "剩 1 天 2 小时" and countdown(59) == "剩 0 分钟"


def solved(client: httpx.Client) -> dict[str, str]:
    page = client.get("/board").text
    token = re.search(r'name="challenge" value="([^"]+)"', page)
    sum_ = re.search(r'id="challenge-question">(\d) 加 (\d) 等于几？', page)
    assert token and sum_, page
    return {"challenge": token.group(1), "answer": str(int(sum_.group(1)) + int(sum_.group(2)))}


def leave_message(client: httpx.Client, title: str, body: str) -> None:
    """A message through the public form, as anyone would leave it (not signed in)."""
    with httpx.Client(base_url=str(client.base_url), timeout=30) as public:
        form = {"kind": "complaint", "title": title, "body": body, "contact": CONTACT}
        assert public.post("/board", data=form | solved(public)).status_code == 201


def test_the_office_view_lists_a_public_message_and_marks_it_with_a_reason(
    web: tuple[httpx.Client, Settings],
) -> None:
    client, settings = web
    # The public pages speak English on request too.
    english = client.get("/board", params={"lang": "en"})
    assert '<html lang="en">' in english.text and 'data-lang="zh_CN"' in english.text
    client.cookies.delete("tf_lang")
    leave_message(client, "<b>路灯</b>不亮", "幸福路 12 号门口路灯坏了一个月。<script>x()</script>")
    listing = client.get("/board/office").text
    assert "&lt;b&gt;路灯&lt;/b&gt;不亮" in listing and "<b>路灯" not in listing
    row = HTMLParser(listing).css_first("#messages tr[data-message]")
    assert row is not None and row.attributes["data-status"] == "new"
    mid = int(row.attributes["data-message"] or 0)
    detail = client.get("/board/office", params={"m": mid}).text
    assert CONTACT in detail and "&lt;script&gt;x()&lt;/script&gt;" in detail
    assert "<script>x()" not in detail

    # A mark needs a reason; without one nothing changes.
    r = client.post(f"/board/office/{mid}/status", data={"status": "closed", "reason": " "})
    assert r.status_code == 303 and "err=" in r.headers["location"]
    assert client.get("/api/v1/board/messages").json()["messages"][0]["status"] == "new"
    r = client.post(
        f"/board/office/{mid}/status", data={"status": "closed", "reason": "重复留言", "tab": "new"}
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/board/office?status=new")
    page = HTMLParser(client.get(r.headers["location"]).text)
    assert page.css_first("#message-status").text() == "已办结(无需答复)"
    assert "重复留言" in page.css_first("#message-history").text()
    assert client.get("/api/v1/board/messages").json()["counts"]["closed"] == 1
    assert "已办结(无需答复) (1)" in client.get("/board/office").text

    add_person(settings, "kan", "viewer")
    add_person(settings, "cg", "handler", "城管局")
    add_person(settings, "boss", "approver", "县委网信办")
    for name in ("kan", "cg"):
        with signed_in(client, name) as other:
            assert other.get("/board/office").status_code == 403
            refused = other.post(
                f"/board/office/{mid}/status", data={"status": "new", "reason": "x"}
            )
            assert refused.status_code == 403
            assert other.post(f"/board/office/{mid}/case", data={}).status_code == 403
    with signed_in(client, "boss") as boss:
        assert boss.get("/board/office", params={"m": mid}).status_code == 200
        back = boss.post(
            f"/board/office/{mid}/status", data={"status": "new", "reason": "需要答复"}
        )
        assert back.status_code == 303
    assert client.get("/api/v1/board/messages").json()["messages"][0]["status"] == "new"


def test_a_case_opened_from_a_message_and_its_answer_show_in_the_office_view(
    web: tuple[httpx.Client, Settings],
) -> None:
    from tingfeng.cases import board

    client, settings = web
    leave_message(client, "办居住证要带什么", "请问办居住证需要哪些材料？")
    mid = client.get("/api/v1/board/messages").json()["messages"][0]["id"]
    r = client.post(f"/board/office/{mid}/case", data={"level": "serious", "tab": ""})
    assert r.status_code == 303 and r.headers["location"].endswith("?msg=opened")
    case_id = int(r.headers["location"].split("/")[2].split("?")[0])
    case = client.get(f"/api/v1/cases/{case_id}").json()
    assert (case["origin"], case["level"], case["title"]) == (
        "board",
        "serious",
        "办居住证要带什么",
    )
    assert case["board_message_id"] == mid and case["summary"] == "请问办居住证需要哪些材料？"
    page = client.get(r.headers["location"]).text
    assert "处理单已登记" in page and f'href="/board/office?m={mid}"' in page
    message = client.get("/api/v1/board/messages").json()["messages"][0]
    assert message["status"] == "accepted" and message["case_id"] == case_id
    again = client.post(f"/board/office/{mid}/case", data={"level": "general"})
    assert again.status_code == 303 and "err=" in again.headers["location"]
    assert len(client.get("/api/v1/cases").json()["cases"]) == 1

    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        board.publish_answer(
            conn, mid, "需带身份证和租房合同。", at=datetime.now(UTC), by="县公安局"
        )
    engine.dispose()
    view = HTMLParser(client.get("/board/office", params={"m": mid}).text)
    assert view.css_first("#message-case") is not None
    answer = view.css_first("#message-answer")
    assert answer is not None and "需带身份证和租房合同。" in answer.text()
    assert "县公安局 答复于" in answer.text()
    assert view.css_first("#open-case") is None and view.css_first("#mark") is None


@pytest.mark.parametrize("settings", [False], indirect=True)
def test_the_office_view_says_how_to_turn_a_disabled_board_on(
    web: tuple[httpx.Client, Settings],
) -> None:
    client, _ = web
    page = client.get("/board/office")
    assert page.status_code == 200
    assert 'id="board-disabled"' in page.text and "TINGFENG_BOARD_ENABLED=true" in page.text
    assert client.get("/board").status_code == 404
    assert client.post("/board/office/1/status", data={"status": "spam"}).status_code == 404


def test_a_message_on_the_public_board_becomes_a_case_on_the_cases_board(
    web: tuple[httpx.Client, Settings], browser: object
) -> None:
    from playwright.sync_api import expect

    client, _settings = web
    base = str(client.base_url)
    errors: list[str] = []
    # The pages in Chinese whatever the browser's own language.
    public_context = browser.new_context(locale="zh-CN")  # type: ignore[attr-defined]
    public = public_context.new_page()
    public.on("pageerror", lambda e: errors.append(str(e)))
    public.goto(base + "/board")
    a, b = map(int, re.findall(r"\d+", public.inner_text("#challenge-question")))
    public.check("input[name=kind][value=complaint]")
    public.fill("input[name=title]", "幸福路路灯不亮")
    public.fill(
        "textarea[name=body]",
        '<img src=x onerror="window.__xss=1">幸福路 12 号门口路灯坏了一个月。',
    )
    public.fill("input[name=contact]", CONTACT)
    public.fill("input[name=answer]", str(a + b))
    screenshot(public, "board_public")
    public.click("#board-form button[type=submit]")
    public.wait_for_selector("#follow-link")
    public_context.close()

    client.cookies.set("tf_lang", "zh_CN")
    page = signed_in_page(browser, client)
    page.on("pageerror", lambda e: errors.append(str(e)))  # type: ignore[attr-defined]
    page.goto(base + "/board/office?status=new")  # type: ignore[attr-defined]
    page.click("#messages a:has-text('幸福路路灯不亮')")  # type: ignore[attr-defined]
    page.wait_for_selector("#message-body")  # type: ignore[attr-defined]
    assert "幸福路 12 号门口路灯坏了一个月" in page.inner_text("#message-body")  # type: ignore[attr-defined]
    assert page.locator("main img").count() == 0  # type: ignore[attr-defined]
    screenshot(page, "board_office")
    page.select_option("#open-case select[name=level]", "serious")  # type: ignore[attr-defined]
    page.click("#open-case button")  # type: ignore[attr-defined]
    page.wait_for_selector("#case-msg")  # type: ignore[attr-defined]
    assert "处理单已登记" in page.inner_text("#case-msg")  # type: ignore[attr-defined]
    assert page.inner_text("#case-state") == "新建"  # type: ignore[attr-defined]
    assert [  # the administrator may assess it, nothing else at this stage
        f.get_attribute("data-action")
        for f in page.locator("#case-actions form").all()  # type: ignore[attr-defined]
    ] == ["assess"]
    screenshot(page, "case")

    page.goto(base + "/cases")  # type: ignore[attr-defined]
    card = page.locator('.kcol[data-column="intake"] article.kcard')  # type: ignore[attr-defined]
    expect(card).to_have_count(1)
    expect(card).to_contain_text("幸福路路灯不亮")
    expect(card.locator(".countdown")).to_contain_text("剩")
    screenshot(page, "cases_board")
    page.goto(base + "/ledger")  # type: ignore[attr-defined]
    expect(page.locator("#ledger tr[data-case]")).to_have_count(1)  # type: ignore[attr-defined]
    expect(page.locator("#ledger tr[data-case]")).to_contain_text("留言板")  # type: ignore[attr-defined]
    screenshot(page, "ledger")
    assert page.evaluate("window.__xss") is None  # type: ignore[attr-defined]
    assert errors == []
    page.context.close()  # type: ignore[attr-defined]
