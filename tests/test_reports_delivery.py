"""Scheduled reports: the clock makes a due report once, the zero report on a quiet day, e-mails
it with the file attached to a real SMTP server on loopback, and announces it on a webhook
warning channel; a bad schedule is refused with a message."""

from __future__ import annotations

import email
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import insert, select

from tests.conftest import _free_port as free_port
from tests.loopback import LoopbackServer, Reply
from tingfeng.alerts.clock import tick
from tingfeng.alerts.engine import AlertContext
from tingfeng.alerts.service import create_channel
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import Event, Post, Report, Source
from tingfeng.reports.schedule import due, parse_schedule
from tingfeng.reports.service import ReportError
from tingfeng.settings import Settings

# 2024-03-06 08:05 in Shanghai: yesterday (03-05) is the daily report's day.
NOW = datetime(2024, 3, 6, 0, 5, tzinfo=UTC)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Any]] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        parsed = email.message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


@pytest.fixture
def mail(settings: Settings) -> Iterator[tuple[Mailbox, Settings]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, settings.model_copy(
            update={"smtp_host": "127.0.0.1", "smtp_port": port, "delivery_timeout_s": 5.0,
                    "smtp_from": "tingfeng@yq.example.gov.cn",
                    "report_email": "leader@yq.example.gov.cn, duty@yq.example.gov.cn",
                    "report_schedule": "daily@08:00, weekly@08:30", "report_format": "docx"}
        )  # fmt: skip
    finally:
        controller.stop()


def test_the_clock_makes_sends_and_announces_the_zero_report_once(mail) -> None:
    box, settings = mail
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with LoopbackServer() as hook:
        hook.route("/hook", Reply(200, b"{}", content_type="application/json"))
        with write_transaction(engine) as conn:
            source = conn.execute(insert(Source).values(name="甲", kind="push", config={}))
            conn.execute(
                insert(Post).values(
                    uid="p1", source_id=source.inserted_primary_key[0], content_hash="h1",
                    text_clean="普通信息", published_at=datetime(2024, 3, 5, 3, tzinfo=UTC),
                    fetched_at=datetime(2024, 3, 5, 3, tzinfo=UTC),
                )
            )  # fmt: skip
            create_channel(conn, settings, name="值班群", kind="webhook", target=hook.url("/hook"))
        settings = settings.model_copy(update={"report_channels": "值班群"})
        ctx = AlertContext(settings)
        # 07:59: nothing due yet; 08:05: the daily slot (a Wednesday: no weekly).
        assert due(engine, settings, datetime(2024, 3, 5, 23, 59, tzinfo=UTC)) == []
        tick(engine, ctx, NOW)
        tick(engine, ctx, NOW)  # a second tick makes nothing again
        with engine.connect() as conn:
            rows = conn.execute(select(Report.kind, Report.period, Report.zero)).all()
        assert [tuple(r) for r in rows] == [("daily", "2024-03-05", False),
                                            ("zero", "2024-03-05", True)]  # fmt: skip
        assert len(box.messages) == 1
        rcpt, message = box.messages[0]
        assert sorted(rcpt) == ["duty@yq.example.gov.cn", "leader@yq.example.gov.cn"]
        assert "网络舆情零报告" in message["Subject"] and "〔2024〕第1期" in message["Subject"]
        attachments = list(message.iter_attachments())
        assert attachments[0].get_filename().endswith(".docx")
        assert attachments[0].get_content()[:2] == b"PK"  # a real Office file
        assert "特此零报告" in message.get_body(("plain",)).get_content()
        posted = [json.loads(r.body) for r in hook.requests if r.path == "/hook"]
        assert len(posted) == 1 and "零报告" in json.dumps(posted[0], ensure_ascii=False)
    engine.dispose()


def test_a_notable_day_sends_the_daily_report(mail) -> None:
    box, settings = mail
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with write_transaction(engine) as conn:
        conn.execute(insert(Event).values(
            title="较大事件", level="serious", status="open", posts=3,
            first_seen_at=datetime(2024, 3, 5, 2, tzinfo=UTC),
            last_seen_at=datetime(2024, 3, 5, 4, tzinfo=UTC)))  # fmt: skip
    tick(engine, AlertContext(settings), NOW)
    with engine.connect() as conn:
        assert conn.execute(select(Report.kind)).scalars().all() == ["daily"]
    assert "网络舆情日报告表" in box.messages[0][1]["Subject"]
    engine.dispose()


def test_a_bad_schedule_is_refused_with_a_message() -> None:
    assert [s.kind for s in parse_schedule("daily@08:00,monthly@9:30")] == ["daily", "monthly"]
    with pytest.raises(ReportError, match="KIND@HH:MM"):
        parse_schedule("daily at 8")
