"""Stored XSS beyond the pages: the same payloads (a subset of tests/xss_corpus.py) as collected
posts (title, text, byline, link) grouped into an event with alerts and a case, then read back
from every other output a person opens: alert e-mails (a real SMTP server), webhook and
DingTalk messages, the event's report as HTML, PDF, DOCX and XLSX, and the CSV/Excel exports.

"Executed" means: the payload reached an output as live markup (an element, an on* attribute,
a javascript: link, a field code), as a formula a spreadsheet would run, or made WeasyPrint
fetch a URL. The count must be 0; the tally goes to test-artifacts/attacks/xss.json.
"""

from __future__ import annotations

import csv
import email
import io
import json
import re
import subprocess
import time
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import policy
from typing import Any

import lxml.html
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import insert, select

from tests.conftest import ARTIFACTS, _free_port
from tests.loopback import LoopbackServer, Reply, Request
from tests.xss_corpus import CORPUS
from tingfeng.alerts.dispatch import Dispatcher
from tingfeng.alerts.service import create_channel, create_rule
from tingfeng.collect.items import RawItem
from tingfeng.collect.sources import add_source
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.models import Case, Delivery, Event, EventPost, Post
from tingfeng.ingest.ingestor import Ingestor, SourceRef
from tingfeng.office.people import add_user
from tingfeng.reports.service import make_document, render

PROBE = "XSSOUT"
TALLY = ARTIFACTS / "attacks" / "xss.json"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Formula injection: collected text that a spreadsheet would run.
FORMULAS = [
    '=HYPERLINK("http://evil.example/","点我")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd",
    "-2+3",
]
# Markup whose elements would make a renderer fetch from the fetch-probe server.
FETCHERS = [
    '<img src="{base}/img">',
    '<link rel="stylesheet" href="{base}/css">',
    "<style>@import url({base}/import);</style>",
    '<div style="background:url({base}/bg)">x</div>',
    '<svg><image href="{base}/svg"/></svg>',
    '<iframe src="{base}/frame"></iframe>',
]
ELEMENTS_FROM_PAYLOADS = (
    "script", "img", "iframe", "svg", "object", "embed", "form", "input", "details", "video",
    "audio", "math", "style", "base", "link", "textarea", "select", "marquee", "keygen", "meta",
    "body", "noscript",
)  # fmt: skip


def payloads(base: str) -> list[tuple[int, str]]:
    """60 payloads spread over the corpus, the fetch probes and the formulas."""
    step = max(1, len(CORPUS) // 50)
    chosen = CORPUS[::step][:50]
    extra = [p.format(base=base) for p in FETCHERS] + FORMULAS
    return chosen + [(10_000 + i, p) for i, p in enumerate(extra)]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


URL_ATTRIBUTES = ("href", "src", "action", "formaction", "data", "xlink:href")


# --- what counts as live ------------------------------------------------------------------------


def live_markup(document: str, allowed: set[str]) -> list[str]:
    """Elements, handlers and script URLs in an HTML document that are not the template's."""
    tree = lxml.html.document_fromstring(document)
    found = []
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        tag = element.tag.lower()
        if tag in ELEMENTS_FROM_PAYLOADS and tag not in allowed:
            found.append(f"<{tag}>")
        for name, value in element.attrib.items():
            if name.lower().startswith("on"):
                found.append(f"{tag}[{name}]")
            url = re.sub(r"[\s\x00-\x1f]", "", value).lower()
            if name.lower() in URL_ATTRIBUTES and url.startswith(("javascript:", "vbscript:")):
                found.append(f"{tag}[{name}={value[:40]}]")
    return found


def formula_cells(values: list[Any]) -> list[str]:
    return [v for v in values if isinstance(v, str) and v.startswith(FORMULA_START)]


# --- the data -----------------------------------------------------------------------------------


@pytest.fixture
def stage(web, tmp_path):  # type: ignore[no-untyped-def]
    """Posts carrying the payloads, their alerts delivered, an event and a case around them."""
    client, settings = web
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    receiver = LoopbackServer().__enter__()
    hooks: list[tuple[str, bytes]] = []

    def keep(request: Request) -> Reply:
        hooks.append((request.path, request.body))
        return Reply(200, b'{"errcode":0,"errmsg":"ok"}', content_type="application/json")

    receiver.route("/hook", keep)
    receiver.route("/ding", keep)
    fetch_probe = LoopbackServer().__enter__()
    base = f"http://127.0.0.1:{fetch_probe.port}"
    chosen = payloads(base)
    settings = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port,
                "smtp_from": "tingfeng@yq.example.gov.cn", "delivery_timeout_s": 10.0}
    )  # fmt: skip
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        source = add_source(conn, name="推送", kind="push", config={})
        user = add_user(conn, "duty", "值班员")
        channels = [
            create_channel(conn, settings, name="mail", kind="email",
                           target="duty@yq.example.gov.cn", config={}),
            create_channel(conn, settings, name="hook", kind="webhook",
                           target=receiver.url("/hook"), config={}),
            create_channel(conn, settings, name="ding", kind="apprise",
                           target="dingtalk://0123456789abcdef0123456789abcdef",
                           config={"endpoint": receiver.url("/ding")}),
        ]  # fmt: skip
        create_rule(
            conn,
            {"name": "停运", "conditions": {"query": PROBE}, "per": "post",
             "rate_limit_per_hour": 0, "recipients": {"user_ids": [user.id]},
             "channel_ids": [c["id"] for c in channels]},
            now,
        )  # fmt: skip
    items = [
        RawItem(
            title=f"{payload} {PROBE}",
            text=f"{PROBE} {n} {payload}",
            author=payload[:80],
            url=f"https://news.example.org/{n}",
            external_id=f"x{n}",
            platform="weibo",
            published_at=now - timedelta(minutes=5),
        )
        for n, payload in chosen
    ]
    Ingestor(engine, settings).ingest(SourceRef(source.id, "Asia/Shanghai"), items)
    with write_transaction(engine) as conn:
        post_ids = list(conn.execute(select(Post.id).order_by(Post.id)).scalars())
        assert len(post_ids) == len(chosen)
        event_id = conn.execute(
            insert(Event).values(
                title=chosen[0][1], summary=" ".join(p for _, p in chosen[-10:]), level="serious",
                heat=50.0, posts=len(post_ids), first_post_id=post_ids[0],
                first_seen_at=now - timedelta(hours=1), last_seen_at=now,
            )
        ).inserted_primary_key[0]  # fmt: skip
        conn.execute(insert(EventPost), [{"event_id": event_id, "post_id": p} for p in post_ids])
        for i, title in enumerate([chosen[1][1], *FORMULAS, "\t=1+1"]):
            conn.execute(
                insert(Case).values(
                    number=f"2026-{i + 1:04d}", title=title, summary=chosen[2][1],
                    origin="manual", event_id=event_id, level="serious",
                )
            )  # fmt: skip
    # Deliver every alert through the three channels.
    dispatcher = Dispatcher(engine, settings)
    deadline = time.monotonic() + 120
    while True:
        dispatcher.run_once()
        with engine.connect() as conn:
            states = Counter(
                conn.execute(
                    select(Delivery.status).where(Delivery.channel_id.is_not(None))
                ).scalars()
            )
        if set(states) <= {"sent", "failed"} or time.monotonic() > deadline:
            break
    assert states == {"sent": 3 * len(chosen)}, states
    try:
        yield {
            "client": client, "settings": settings, "engine": engine, "event_id": event_id,
            "payloads": chosen, "mailbox": mailbox, "hooks": hooks, "fetch_probe": fetch_probe,
            "tmp": tmp_path,
        }  # fmt: skip
    finally:
        smtp.stop()
        receiver.__exit__(None, None, None)
        fetch_probe.__exit__(None, None, None)
        engine.dispose()


# --- the outputs --------------------------------------------------------------------------------


def test_no_payload_is_live_in_any_output(stage) -> None:  # type: ignore[no-untyped-def]
    chosen = stage["payloads"]
    executed: dict[str, list[str]] = {}
    tried: dict[str, int] = {}

    # Alert e-mails: the HTML part holds only our own markup; the text part is plain.
    mails = stage["mailbox"].messages
    assert len(mails) == len(chosen)
    live: list[str] = []
    for mail in mails:
        html_part = mail.get_body(("html",)).get_content()
        text_part = mail.get_body(("plain",)).get_content()
        live += live_markup(html_part, allowed={"meta", "body"})
        assert "&lt;" not in text_part and "&#" not in text_part.replace("&#x", "")
    assert any("<script>" in m.get_body(("plain",)).get_content() for m in mails)
    executed["email"], tried["email"] = live, len(mails)

    # Webhook JSON: valid JSON holding the payload as a string; Markdown forms no links.
    hooks = [json.loads(body) for path, body in stage["hooks"] if path == "/hook"]
    dings = [json.loads(body) for path, body in stage["hooks"] if path == "/ding"]
    assert len(hooks) == len(dings) == len(chosen)
    live = []
    for body in hooks:
        live += [m for m in re.findall(r"\]\(\s*javascript:", body["markdown"], re.I)]
        live += re.findall(r"(?<!\\)<[a-z!/]", body["markdown"], re.I)
    for body in dings:
        markdown = body["markdown"]["text"]
        live += re.findall(r"\]\(\s*javascript:", markdown, re.I)
        live += re.findall(r"(?<!\\)<[a-z!/]", markdown, re.I)
    assert any("<script>" in body["subject"] for body in hooks)  # JSON carries it as text
    executed["webhook+dingtalk"], tried["webhook+dingtalk"] = live, len(hooks) + len(dings)

    # The event's report in every format.
    settings, engine = stage["settings"], stage["engine"]
    with engine.connect() as conn:
        doc = make_document(
            conn, "special", day=None, event_id=stage["event_id"], tz=settings.default_timezone,
            now=datetime.now(UTC), office="某市网信办", settings=settings,
        )  # fmt: skip
    html_report = render(doc, "html", settings).decode("utf-8")
    executed["report-html"] = live_markup(html_report, allowed={"meta", "style", "img", "body"})
    # The report's own images are charts inlined as data: URIs; no other image source.
    tree = lxml.html.document_fromstring(html_report)
    executed["report-html"] += [
        src for src in tree.xpath("//img/@src") if not src.startswith("data:image/")
    ]
    assert chosen[0][1].split(">")[0] in tree.text_content()  # shown, as text
    # The fetch probes are in the report (as text), so the PDF below had its chance to fetch.
    assert f"127.0.0.1:{stage['fetch_probe'].port}/img" in tree.text_content()
    tried["report-html"] = len(chosen)

    pdf = render(doc, "pdf", settings)
    pdf_path = stage["tmp"] / "report.pdf"
    pdf_path.write_bytes(pdf)
    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(pdf_path), "-"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert "<" in text  # the payload's markup is printed as characters
    executed["report-pdf"] = [f"fetched {r.path}" for r in stage["fetch_probe"].requests]
    tried["report-pdf"] = len(chosen)

    docx = render(doc, "docx", settings)
    executed["report-docx"] = docx_live(docx)
    from docx import Document as DocxDocument

    words = "\n".join(p.text for p in DocxDocument(io.BytesIO(docx)).paragraphs)
    words += "\n".join(
        cell.text
        for table in DocxDocument(io.BytesIO(docx)).tables
        for row in table.rows
        for cell in row.cells
    )
    assert "<" in words  # literally, as text
    tried["report-docx"] = len(chosen)

    xlsx = render(doc, "xlsx", settings)
    executed["report-xlsx"] = xlsx_formulas(xlsx)
    tried["report-xlsx"] = len(chosen)

    # Exports: the search result and the ledger, as CSV and Excel.
    client = stage["client"]
    live = []
    for url in (f"/api/v1/search/export?q={PROBE}&format=csv", "/api/v1/ledger?format=csv"):
        r = client.get(url)
        assert r.status_code == 200, r.text
        rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert len(rows) > 1
        # The formulas are there, shown as text (a leading apostrophe).
        assert any(cell.startswith(("'=", "'+", "'@")) for row in rows for cell in row)
        live += formula_cells([cell for row in rows for cell in row])
    executed["export-csv"], tried["export-csv"] = live, len(chosen) + len(FORMULAS) + 2
    live = []
    for url in (f"/api/v1/search/export?q={PROBE}&format=xlsx", "/api/v1/ledger?format=xlsx"):
        r = client.get(url)
        assert r.status_code == 200, r.text
        live += xlsx_formulas(r.content)
    executed["export-xlsx"], tried["export-xlsx"] = live, len(chosen) + len(FORMULAS) + 2

    TALLY.parent.mkdir(parents=True, exist_ok=True)
    TALLY.write_text(
        json.dumps(
            {
                "payloads": len(chosen),
                "outputs": sorted(tried),
                "tried": sum(tried.values()),
                "executed": sum(len(v) for v in executed.values()),
                "succeeded": sum(len(v) for v in executed.values()),
                "by_output": {k: {"tried": tried[k], "executed": len(executed[k])} for k in tried},
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    assert {k: v for k, v in executed.items() if v} == {}


def docx_live(data: bytes) -> list[str]:
    """Hyperlinks to script URLs and field codes (HYPERLINK, DDE, INCLUDE…) in a DOCX."""
    found = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if not name.endswith((".xml", ".rels")):
                continue
            xml = archive.read(name).decode("utf-8", "replace")
            found += re.findall(r'Target="\s*javascript:[^"]*"', xml, re.I)
            found += re.findall(r"<w:instrText[^>]*>[^<]*</w:instrText>", xml)
            found += re.findall(r'<w:fldSimple[^>]*w:instr="[^"]*"', xml)
    return found


def xlsx_formulas(data: bytes) -> list[str]:
    from openpyxl import load_workbook

    found = []
    workbook = load_workbook(io.BytesIO(data))
    for sheet in workbook.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                if cell.data_type == "f" or formula_cells([cell.value]):
                    found.append(f"{sheet.title}!{cell.coordinate}={str(cell.value)[:40]}")
    return found
