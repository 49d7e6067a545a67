"""The web pages in a real Chromium: posts arrive live, untrusted content stays inert."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.conftest import push_source, screenshot, signed_in_page


def test_live_page_shows_pushed_posts_without_reload_and_never_runs_them(web, browser) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    sid, token = push_source(settings)
    page = signed_in_page(browser, client)  # type: ignore[attr-defined]
    page.goto(str(client.base_url) + "/live")
    page.wait_for_selector("text=信源状态")
    r = client.post(
        f"/api/v1/sources/{sid}/posts",
        headers={"Authorization": f"Bearer {token}"},
        json=[
            {
                "id": "1",
                "text": '<img src=x onerror="window.__xss=1">县医院门诊楼漏雨，患者只能打伞候诊',
            },
            {"id": "2", "text": "<script>window.__xss=2</script>镇政府回应垃圾清运问题"},
        ],
    )
    assert r.json()["stored"] == 2
    expect(page.locator("#feed")).to_contain_text("县医院门诊楼漏雨", timeout=15000)
    assert "镇政府回应垃圾清运问题" in page.inner_text("#feed")
    expect(page.locator("#counter")).to_contain_text("本页新到 2 条")
    assert page.evaluate("window.__xss") is None
    assert page.locator("#feed img").count() == 0
    screenshot(page, "live")
    # Each post links to its detail page.
    page.locator("#feed a[href^='/posts/']").first.click()
    expect(page.locator("#post-title")).to_be_visible()

    page.goto(str(client.base_url) + "/search?q=漏雨")
    assert page.inner_text("mark") == "漏雨"
    assert page.evaluate("window.__xss") is None
    page.close()


def test_search_page_shows_query_errors_in_place(web, browser) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    page = signed_in_page(browser, client)  # type: ignore[attr-defined]
    page.goto(str(client.base_url) + "/search?q=(医院")
    assert "not closed" in page.inner_text(".error")
    page.close()


def test_topic_page_previews_a_draft_and_shows_query_errors(web, browser) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    sid, token = push_source(settings)
    r = client.post(
        f"/api/v1/sources/{sid}/posts",
        headers={"Authorization": f"Bearer {token}"},
        json=[
            {"id": "1", "text": '县医院收费不透明，患者投诉<img src=x onerror="window.__xss=1">'},
            {"id": "2", "text": "卫生院门口贴满小广告：医院投诉热线"},
            {"id": "3", "text": "今天天气很好"},
        ],
    )
    assert r.json()["stored"] == 3
    page = signed_in_page(browser, client)  # type: ignore[attr-defined]
    page.goto(str(client.base_url) + "/topics")
    page.fill("input[name=name]", "医疗投诉")
    page.fill("input[name=query]", "医院 AND (投诉")
    page.click("#preview-btn")
    page.wait_for_selector("#preview-error")
    assert "character" in page.inner_text("#preview-error")
    page.fill("input[name=query]", "医院 AND 投诉")
    page.fill("input[name=exclusions]", "广告")
    page.click("#preview-btn")
    page.wait_for_selector("#preview-count")
    assert "1" in page.inner_text("#preview-count strong")
    assert page.locator("#preview mark").count() >= 1
    assert page.evaluate("window.__xss") is None
    page.click("#topic-form button[type=submit]")
    page.wait_for_selector("tr[data-topic]")
    assert "医疗投诉" in page.inner_text("#topics")
    page.close()


def test_alerts_page_shows_new_alerts_live_and_acknowledges_them(web, browser) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    sid, token = push_source(settings)
    r = client.post(
        "/api/v1/alert-rules", json={"name": "爆炸", "conditions": {"query": "爆炸"}, "per": "post"}
    )
    assert r.status_code == 201, r.text
    page = signed_in_page(browser, client)  # type: ignore[attr-defined]
    page.goto(str(client.base_url) + "/alerts")
    page.wait_for_selector("text=没有待确认的预警")
    assert page.inner_text("#open-count") == "0"
    r = client.post(
        f"/api/v1/sources/{sid}/posts",
        headers={"Authorization": f"Bearer {token}"},
        json=[
            {
                "id": "1",
                "text": "化工厂仓库发生爆炸 &lt;img src=x onerror=window.__xss=1&gt;现场浓烟滚滚",
            },
            {"id": "2", "text": "今天天气很好"},
        ],
    )
    assert r.json()["stored"] == 2
    # The alert arrives without a reload; the header count and the nav badge follow.
    page.wait_for_selector("tr[data-alert]", timeout=15000)
    row = page.locator("tr[data-alert]")
    assert row.count() == 1 and "化工厂仓库发生爆炸" in row.inner_text()
    assert "<img src=x" in row.inner_text()  # shown as text, never as an element
    assert page.locator("#alerts img").count() == 0
    expect(page.locator("#open-count")).to_have_text("1")
    assert page.inner_text("#nav-alert-badge") == "1"

    page.click("tr[data-alert] button.ack")
    expect(page.locator("tr[data-alert] .status")).to_contain_text("已确认")
    # The signed-in person acknowledges.
    assert "tester" in row.inner_text() and row.locator("button.ack").count() == 0
    expect(page.locator("#open-count")).to_have_text("0")
    assert page.inner_text("#ack-by") == "tester"
    alert_id = int(row.get_attribute("data-alert"))
    detail = client.get(f"/api/v1/alerts/{alert_id}").json()
    assert detail["status"] == "acknowledged" and detail["acked_by"] == "tester"
    assert detail["acked_via"] == "web"
    assert page.evaluate("window.__xss") is None
    page.close()


def test_case_page_and_ledger_show_a_case_with_untrusted_text_inert(web, browser) -> None:  # type: ignore[no-untyped-def]
    from tingfeng.cases.service import act, open_case
    from tingfeng.db.engine import make_engine, write_transaction
    from tingfeng.office.people import add_department, add_user

    client, settings = web
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        add_department(conn, "城管局")
        ana = add_user(conn, "ana", "李监测", role="analyst")
        cid = open_case(
            conn, ana, settings, level="特大",
            title='<img src=x onerror="window.__xss=1">化工厂爆炸',
        )  # fmt: skip
        act(conn, ana, settings, cid, "assess", handling="立即核实")
    engine.dispose()
    page = signed_in_page(browser, client)  # type: ignore[attr-defined]
    page.goto(f"{client.base_url}/cases/{cid}")
    page.wait_for_selector("#case-state")
    assert page.inner_text("#case-state") == "已研判"
    assert "化工厂爆炸" in page.inner_text("h2") and page.locator("main img").count() == 0
    assert "签收" in page.inner_text("#deadlines") and "李监测" in page.inner_text("#history")
    page.goto(f"{client.base_url}/ledger")
    row = page.locator("#ledger tr[data-case]")
    assert row.count() == 1 and "特大" in row.inner_text()
    page.click("#ledger tr[data-case] a")
    page.wait_for_url(f"**/cases/{cid}")
    assert page.evaluate("window.__xss") is None
    page.close()


def test_sign_in_then_act_on_a_case_from_its_page(web, browser) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import TEST_PASSWORD, add_person
    from tingfeng.cases.service import act, open_case
    from tingfeng.db.engine import make_engine, write_transaction
    from tingfeng.office.people import find_user

    client, settings = web
    add_person(settings, "ana", "analyst")
    add_person(settings, "boss", "approver", "县委网信办")
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        ana = find_user(conn, "ana")
        cid = open_case(conn, ana, settings, title="某路段占道经营", level="较大")
        act(conn, ana, settings, cid, "assess", handling="交城管局")
    engine.dispose()
    context = browser.new_context(locale="zh-CN")  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{client.base_url}/cases/{cid}")
    assert page.url.endswith(f"/login?next=/cases/{cid}")
    page.fill("input[name=username]", "boss")
    page.fill("input[name=password]", "wrong-password")
    page.click("form[action='/login'] button")
    assert "用户名或密码不正确" in page.inner_text("#login-error")
    page.fill("input[name=password]", TEST_PASSWORD)
    page.click("form[action='/login'] button")
    page.wait_for_url(f"**/cases/{cid}")
    assert page.inner_text("#me") == "boss"
    # The approver sees only what an approver may do now; the dismissal needs a reason.
    actions = page.locator("#case-actions form").evaluate_all("fs => fs.map(f => f.dataset.action)")
    assert actions == ["return_assessment", "approve_handling", "dismiss"]
    page.click("form[data-action=approve_handling] button")
    page.wait_for_selector("#case-msg")
    assert page.inner_text("#case-state") == "已批准处置"
    assert "批准处置 已完成" in page.inner_text("#case-msg")
    assert "boss" in page.inner_text("#history")
    context.close()


def test_a_case_from_an_event_to_a_published_reply_in_the_browser(web, browser) -> None:  # type: ignore[no-untyped-def]
    """登记 from the event page, assess, approve, assign, accept, draft, approve and publish
    the reply: all through the pages' forms, each step by the role whose job it is."""
    from sqlalchemy import insert

    from tests.conftest import add_person, sign_in
    from tingfeng.db.engine import make_engine, write_transaction
    from tingfeng.db.models import Event

    client, settings = web
    add_person(settings, "ana", "analyst")
    add_person(settings, "boss", "approver", "县委网信办")
    add_person(settings, "cg", "handler", "县委网信办")
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        eid = conn.execute(
            insert(Event).values(title="某小区垃圾清运不及时", level="serious", posts=3)
        ).inserted_primary_key[0]
    engine.dispose()

    def as_user(name: str) -> object:
        with httpx.Client(base_url=str(client.base_url), timeout=30) as c:
            sign_in(c, name)
            return signed_in_page(browser, c)

    def act(page, action: str, **fields: str) -> None:  # type: ignore[no-untyped-def]
        form = page.locator(f"form[data-action={action}]")
        for name, value in fields.items():
            form.locator(f"[name={name}]").fill(value)
        form.locator("button").click()
        page.wait_for_selector("#case-msg")

    ana = as_user("ana")
    ana.goto(f"{client.base_url}/events/{eid}")
    ana.click("#open-case button")
    ana.wait_for_selector("#case-msg")
    assert "处理单已登记" in ana.inner_text("#case-msg")
    assert ana.inner_text("#case-state") == "新建" and "某小区垃圾清运不及时" in ana.inner_text(
        "h2"
    )
    case_url = ana.url.split("?")[0]
    act(ana, "assess", handling="交城管核实")
    boss = as_user("boss")
    boss.goto(case_url)
    act(boss, "approve_handling")
    ana.goto(case_url)
    act(ana, "assign", department="县委网信办")
    cg = as_user("cg")
    cg.goto(case_url)
    act(cg, "accept")
    cg.fill("#draft-reply textarea", "经核实，垃圾已清运。")
    cg.click("#draft-reply button")
    cg.wait_for_selector("#case-msg")
    cg.click(".reply-steps form[action$='/submit'] button")
    cg.wait_for_selector("#case-msg")
    assert cg.inner_text("#case-state") == "回复待审"
    boss.goto(case_url)
    boss.click(".reply-steps form[action$='/approve'] button")
    boss.wait_for_selector("#case-msg")
    assert boss.inner_text("#case-state") == "回复已审批"
    cg.goto(case_url)
    publish = cg.locator(".reply-steps form[action$='/publish']")
    publish.locator("[name=platform]").fill("微博")
    publish.locator("[name=account]").fill("@某县城管")
    publish.locator("[name=url]").fill("javascript:alert(1)")
    publish.locator("button").click()
    cg.wait_for_selector("#case-err")
    assert "not a web address" in cg.inner_text("#case-err")
    publish = cg.locator(".reply-steps form[action$='/publish']")
    publish.locator("[name=platform]").fill("微博")
    publish.locator("[name=account]").fill("@某县城管")
    publish.locator("button").click()
    cg.wait_for_selector("#case-msg")
    assert cg.inner_text("#case-state") == "已发布"
    assert "经核实，垃圾已清运。" in cg.inner_text("#replies")
    # Followed by the handler, closed by the approver, archived by the analyst.
    act(cg, "follow_up")
    assert cg.inner_text("#case-state") == "跟踪中"
    boss.goto(case_url)
    act(boss, "close", result="垃圾已清运，小区居民认可")
    assert boss.inner_text("#case-state") == "已办结"
    ana.goto(case_url)
    act(ana, "archive")
    assert ana.inner_text("#case-state") == "已归档"
    assert ana.locator("form[data-action]").count() == 0  # nothing left to do
    history = ana.inner_text("#history")
    for who in ("ana", "boss", "cg"):
        assert who in history
