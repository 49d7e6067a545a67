"""The public message board (留言板) against the real server: leaving a message with a solved
challenge, the refusals (wrong answer, spent challenge, honeypot, rate limit, invalid input),
the private follow link, answers published from cases, the statistics, and the office's API.

Dates around the 2026 National Day holiday (chinese-calendar): Oct 1–7 are rest days, Sat
Oct 10 is a working day, so 5 working days after Wed Sep 30 end on Tue Oct 13.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine, func, select

from tingfeng.audit import entries
from tingfeng.cases import board
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import BoardMessage
from tingfeng.settings import Settings

SH = ZoneInfo("Asia/Shanghai")
CONTACT = "13800001111-zhang@example.cn"


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The board on (or off with `indirect` parameter False), three messages an hour."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'tf.db'}",
        data_dir=tmp_path / "var",
        board_enabled=getattr(request, "param", True),
        board_per_hour=3,
        board_title="某某县网上留言板",
    )


@pytest.fixture
def client(web: tuple[httpx.Client, Settings]) -> httpx.Client:
    return web[0]


@pytest.fixture
def engine(web: tuple[httpx.Client, Settings]) -> Iterator[Engine]:
    engine = make_engine(web[1].database_url)
    yield engine
    engine.dispose()


def solved(client: httpx.Client) -> dict[str, str]:
    """Open the board and solve its challenge as a person would."""
    page = client.get("/board")
    assert page.status_code == 200, page.text
    token = re.search(r'name="challenge" value="([^"]+)"', page.text)
    sum_ = re.search(r'id="challenge-question">(\d) 加 (\d) 等于几？', page.text)
    assert token and sum_, page.text
    return {"challenge": token.group(1), "answer": str(int(sum_.group(1)) + int(sum_.group(2)))}


def leave(client: httpx.Client, challenge: dict[str, str] | None = None, **fields: str):
    form = {
        "kind": "complaint",
        "title": "小区门口路灯不亮",
        "body": "幸福路 12 号门口路灯坏了一个月。",
    }
    return client.post("/board", data=form | (challenge or solved(client)) | fields)


def follow_path(response: httpx.Response) -> str:
    found = re.search(
        r'id="follow-link" href="https?://[^/"]+(/board/m/[A-Za-z0-9_-]+)"', response.text
    )
    assert found, response.text
    return found.group(1)


def stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(BoardMessage)).scalar() or 0)


def test_a_message_with_a_solved_challenge_gets_a_private_follow_link(
    client: httpx.Client, engine: Engine
) -> None:
    done = leave(client, name="张先生", contact=CONTACT)
    assert done.status_code == 201, done.text
    assert "请保存下面的私人链接" in done.text and "只显示这一次" in done.text
    assert done.headers["referrer-policy"] == "no-referrer"
    path = follow_path(done)
    token = path.rsplit("/", 1)[1]

    page = client.get(path)
    assert page.status_code == 200
    assert "待处理" in page.text and "小区门口路灯不亮" in page.text and "幸福路 12 号" in page.text
    assert page.headers["cache-control"] == "no-store"
    # Only the token's hash is kept; the log records the message without the contact.
    with engine.connect() as conn:
        row = conn.execute(select(BoardMessage.__table__)).one()
        log = entries(conn, subject=f"board:{row.id}")
    assert row.follow_hash == board.token_hash(token) and token not in row.follow_hash
    assert row.status == "new" and row.public and row.contact == CONTACT
    assert [e["action"] for e in log] == ["board.message"]
    assert CONTACT not in str(log)

    with write_transaction(engine) as conn:
        board.mark_accepted(conn, row.id, 41, None)
    assert "办理中" in client.get(path).text
    assert client.get("/board/m/" + "x" * 32).status_code == 404
    assert "未找到留言" in client.get("/board/m/" + token[:-1]).text


def test_wrong_spent_and_forged_challenges_and_the_honeypot_are_refused(
    client: httpx.Client, engine: Engine
) -> None:
    challenge = solved(client)
    wrong = str(int(challenge["answer"]) + 1)
    r = leave(client, challenge | {"answer": wrong})
    assert r.status_code == 400 and "验证题答案不正确" in r.text
    # The wrong try spent the token: the right answer no longer helps with it.
    r = leave(client, challenge)
    assert r.status_code == 400 and "已经用过" in r.text

    fresh = solved(client)
    assert leave(client, fresh).status_code == 201
    r = leave(client, fresh, title="再发一次")
    assert r.status_code == 400 and "已经用过" in r.text

    forged = solved(client)
    r = leave(client, forged | {"challenge": forged["challenge"][:-2] + "AA"})
    assert r.status_code == 400 and "验证信息无效" in r.text

    r = leave(client, website="http://spam.example/")
    assert r.status_code == 400 and "网址" in r.text
    assert stored(engine) == 1


def test_more_than_the_hourly_limit_is_refused_with_when_to_try_again(
    client: httpx.Client, engine: Engine
) -> None:
    for n in range(3):
        assert leave(client, title=f"第 {n} 条").status_code == 201
    r = leave(client, title="第四条")
    assert r.status_code == 429
    assert "每小时最多留言 3 条" in r.text and "之后再试" in r.text
    assert 0 < int(r.headers["retry-after"]) <= 3600
    assert "第四条" in r.text  # the input is kept for later
    assert stored(engine) == 3


def test_invalid_input_is_shown_with_the_input_kept_and_nothing_stored(
    client: httpx.Client, engine: Engine
) -> None:
    r = leave(
        client, title="", body="太短", name="李女士", contact=CONTACT, kind="rumour", private="1"
    )
    assert r.status_code == 422
    assert 'id="error-title"' in r.text and "请填写标题" in r.text
    assert "至少 5 个字" in r.text and "请选择留言类型" in r.text
    assert 'value="李女士"' in r.text and f'value="{CONTACT}"' in r.text
    assert ">太短</textarea>" in r.text
    assert re.search(r'name="private" value="1" checked', r.text)
    r = leave(client, title="长" * 101)
    assert r.status_code == 422 and "最多 100 个字" in r.text
    assert stored(engine) == 0


def test_markup_in_a_message_is_shown_as_text(client: httpx.Client, engine: Engine) -> None:
    hostile = "<script>window.__xss=1</script>"
    done = leave(client, title=hostile, body=f'<img src=x onerror="alert(1)"> {hostile}')
    assert done.status_code == 201
    path = follow_path(done)
    with write_transaction(engine) as conn:
        (mid,) = conn.execute(select(BoardMessage.id)).one()
        board.publish_answer(conn, mid, f"答复 {hostile}", at=datetime.now(UTC), by="县网信办")
    for page in (client.get(path).text, client.get("/board").text, done.text):
        assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page
        assert "<script>window.__xss" not in page and "<img src=x" not in page


def test_answers_appear_on_the_board_with_how_fast_they_came(
    client: httpx.Client, engine: Engine
) -> None:
    received = datetime(2026, 9, 30, 10, 0, tzinfo=SH)
    with write_transaction(engine) as conn:
        fast, _ = board.submit_message(
            conn,
            kind="question",
            title="办证要带什么材料",
            body="请问办居住证需要哪些材料？",
            now=received,
        )
        slow, _ = board.submit_message(
            conn,
            kind="suggestion",
            title="增加公交班次",
            body="建议 8 路公交早高峰加密班次。",
            now=received,
        )
        board.publish_answer(
            conn, fast, "需带身份证和租房合同。", at=received + timedelta(hours=3), by="县公安局"
        )
        # Oct 14 is the 6th working day after Sep 30: late.
        board.publish_answer(
            conn, slow, "已转交公交公司研究。", at=received + timedelta(days=14), by="县交通局"
        )
    assert leave(client).status_code == 201  # pending, not due yet

    page = client.get("/board").text
    answered = page[page.index('id="answered"') :]
    assert "办证要带什么材料" in answered and "需带身份证和租房合同。" in answered
    assert "县公安局 答复于 2026-09-30 13:00" in answered
    assert "小区门口路灯不亮" not in answered  # not answered yet
    assert re.search(r'id="stat-received">3<', page) and re.search(r'id="stat-answered">2<', page)
    assert "（67%）" in page
    hours = (3 + 14 * 24) / 2
    assert f'id="stat-mean">{hours:.1f}<' in page and f'id="stat-median">{hours:.1f}<' in page
    assert 'id="stat-on-time">50%<' in page


def test_stats_count_closed_spam_and_overdue_messages_fairly(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    t0 = datetime(2026, 9, 30, 10, 0, tzinfo=SH)
    with write_transaction(engine) as conn:
        ids = [
            board.submit_message(conn, kind="question", title=f"t{n}", body="正文正文正文", now=t0)[
                0
            ]
            for n in range(4)
        ]
        board.publish_answer(
            conn, ids[0], "答复", at=datetime(2026, 10, 13, 23, 0, tzinfo=SH), by="办"
        )
        board.set_status(conn, ids[1], "closed", None, "重复留言")
        board.set_status(conn, ids[2], "spam", None)
    assert board.answer_deadline(t0, "Asia/Shanghai").isoformat() == "2026-10-13"
    with engine.connect() as conn:
        on_deadline = board.stats(conn, datetime(2026, 10, 13, 12, tzinfo=SH))
        after = board.stats(conn, datetime(2026, 10, 14, 12, tzinfo=SH))
        shown = [m["id"] for m in board.public_messages(conn, limit=10)]
        office = {m["id"]: m["status"] for m in board.list_messages(conn)}
    engine.dispose()
    # Spam is not received; closed needs no answer; ids[3] is unanswered.
    assert on_deadline["received"] == 3 and on_deadline["closed"] == 1
    assert on_deadline["answered"] == 1 and on_deadline["answered_share"] == 0.5
    assert on_deadline["on_time_share"] == 1.0  # answered on the last day; ids[3] not yet due
    assert after["on_time_share"] == 0.5  # ids[3] is now overdue
    assert shown == [ids[0]]  # only the answered one is public
    assert office == dict(zip(ids, ["answered", "closed", "spam", "new"], strict=True))


def test_a_private_message_stays_off_the_board_but_its_link_shows_the_answer(
    client: httpx.Client, engine: Engine
) -> None:
    done = leave(client, title="家里的私事", private="1")
    assert done.status_code == 201
    with write_transaction(engine) as conn:
        (mid,) = conn.execute(select(BoardMessage.id)).one()
        board.publish_answer(conn, mid, "已联系您本人处理。", at=datetime.now(UTC), by="县民政局")
    page = client.get("/board").text
    assert "家里的私事" not in page and "已联系您本人处理" not in page
    followed = client.get(follow_path(done)).text
    assert "已联系您本人处理。" in followed and "已答复" in followed and "不公开" in followed


@pytest.mark.parametrize("settings", [False], indirect=True)
def test_a_disabled_board_is_not_there(client: httpx.Client) -> None:
    assert client.get("/board").status_code == 404
    assert client.post("/board", data={"title": "x"}).status_code == 404
    assert client.get("/board/m/whatever").status_code == 404
    assert client.get("/api/v1/board/messages").status_code == 404
    assert client.get("/healthz").status_code == 200


def test_the_contact_is_never_on_a_public_page(client: httpx.Client, engine: Engine) -> None:
    done = leave(client, name="王先生", contact=CONTACT)
    path = follow_path(done)
    with write_transaction(engine) as conn:
        (mid,) = conn.execute(select(BoardMessage.id)).one()
        board.publish_answer(conn, mid, "路灯已修复。", at=datetime.now(UTC), by="县城管局")
    pages = [done.text, client.get(path).text, client.get("/board").text]
    assert all("王先生" in p for p in pages[1:])  # the name is public, as the form says
    assert not any(CONTACT in p or "13800001111" in p for p in pages)
    office = client.get("/api/v1/board/messages").json()
    assert office["messages"][0]["contact"] == CONTACT


def test_the_office_marks_spam_and_closed_through_the_api(
    client: httpx.Client, engine: Engine
) -> None:
    for title in ("广告", "重复的留言"):
        assert leave(client, title=title).status_code == 201
    listed = client.get("/api/v1/board/messages", params={"status": "new"}).json()
    ids = {m["title"]: m["id"] for m in listed["messages"]}
    assert listed["counts"]["new"] == 2

    r = client.post(
        f"/api/v1/board/messages/{ids['广告']}/status",
        json={"status": "spam", "reason": "推销", "by": "zhang"},
    )
    assert r.status_code == 200 and r.json()["status"] == "spam"
    r = client.post(f"/api/v1/board/messages/{ids['重复的留言']}/status", json={"status": "closed"})
    assert r.json()["status"] == "closed"
    spam = client.get("/api/v1/board/messages", params={"status": "spam"}).json()["messages"]
    assert [m["title"] for m in spam] == ["广告"]
    with engine.connect() as conn:
        log = entries(conn, subject=f"board:{ids['广告']}")
    # The signed-in person, not the "by" the request claims.
    assert log[0]["action"] == "board.status" and log[0]["actor"] == "tester"
    assert log[0]["detail"] == {"from": "new", "to": "spam", "reason": "推销"}

    assert (
        client.post(
            f"/api/v1/board/messages/{ids['广告']}/status", json={"status": "answered"}
        ).status_code
        == 422
    )
    assert (
        client.post("/api/v1/board/messages/999/status", json={"status": "spam"}).status_code == 404
    )
    assert client.get("/api/v1/board/messages", params={"status": "bogus"}).status_code == 422
    with write_transaction(engine) as conn:
        board.publish_answer(
            conn, ids["重复的留言"], "见前一条答复。", at=datetime.now(UTC), by="办"
        )
    r = client.post(f"/api/v1/board/messages/{ids['重复的留言']}/status", json={"status": "spam"})
    assert r.status_code == 422 and "answered" in r.json()["error"]
    assert leave(client, title="开了处理单的留言").status_code == 201
    with write_transaction(engine) as conn:
        (newest,) = conn.execute(select(func.max(BoardMessage.id))).one()
        board.mark_accepted(conn, newest, 7, None)
    r = client.post(f"/api/v1/board/messages/{newest}/status", json={"status": "spam"})
    assert r.status_code == 422 and "case 7" in r.json()["error"]


# --- the anti-spam pieces on their own -------------------------------------------------------


def test_the_rate_limit_is_a_sliding_hour_per_address() -> None:
    limiter = board.RateLimiter(2)
    t = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert limiter.allow("a", t) and limiter.allow("a", t + timedelta(minutes=10))
    assert not limiter.allow("a", t + timedelta(minutes=20))
    assert limiter.allow("b", t + timedelta(minutes=20))  # another address has its own count
    assert limiter.retry_after("a", t + timedelta(minutes=20)) == t + timedelta(hours=1)
    assert limiter.allow("a", t + timedelta(hours=1))  # the first one left the window
    assert not limiter.allow("a", t + timedelta(hours=1, minutes=5))
    assert board.RateLimiter(0).allow("a", t)


def test_a_challenge_is_answered_once_within_thirty_minutes() -> None:
    secret, other = b"s" * 32, b"o" * 32
    t = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    c = board.make_challenge(secret, t)
    a, b = map(int, re.findall(r"\d", c.question))
    used = board.UsedTokens()
    assert c.question == f"{a} 加 {b} 等于几？"
    # The answer is not readable in the token: it travels only as a keyed hash. (A digit can
    # occur by chance inside that hash's text, so the check is on whole fields.)
    issued, nonce, answer_field, _signature = c.token.split(".")
    assert str(a + b) not in (issued, nonce, answer_field)
    assert answer_field == board._answer_mac(secret, nonce, a + b)
    assert answer_field != board._answer_mac(other, nonce, a + b)

    def check(token: str, answer: str, at: datetime, key: bytes = secret) -> str:
        return board.check_challenge(key, token, answer, at, used=used)

    assert check(c.token, str(a + b), t + timedelta(minutes=5)) == "ok"
    assert check(c.token, str(a + b), t + timedelta(minutes=6)) == "reused"
    late = board.make_challenge(secret, t)
    assert check(late.token, "3", t + timedelta(minutes=31)) == "expired"
    wrong = board.make_challenge(secret, t)
    assert check(wrong.token, "99", t) == "wrong"
    assert check(board.make_challenge(other, t).token, "3", t) == "invalid"
    assert check("garbage", "3", t) == "invalid" and check("1.2.3.é", "3", t) == "invalid"
    # Full-width digits and Chinese numerals are what people type.
    n = board.make_challenge(secret, t)
    s = sum(map(int, re.findall(r"\d", n.question)))
    assert check(n.token, chr(0xFF10 + s % 10) if s < 10 else str(s), t) == "ok"
    z = board.make_challenge(secret, t)
    s = sum(map(int, re.findall(r"\d", z.question)))
    zh = {v: k for k, v in board._ZH_NUMBERS.items()}[s]
    assert check(z.token, zh, t) == "ok"
