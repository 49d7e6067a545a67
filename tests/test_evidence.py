"""Evidence capture (取证) from loopback pages in the system Chromium, and tampering caught."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import struct
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import Engine, insert, update
from typer.testing import CliRunner, Result

from tests.loopback import LoopbackServer, Reply
from tingfeng import audit
from tingfeng.cases import evidence as ev
from tingfeng.cli import evidence as _evidence_cli  # noqa: F401  (registers `evidence`)
from tingfeng.cli.main import app
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import Case, Evidence
from tingfeng.settings import Settings

PNG_VIEWPORT_HEIGHT = 720
LINE = "县医院门诊楼漏雨，患者只能打伞候诊。"


def long_page(title: str = "县医院门诊楼漏雨", lines: int = 150) -> str:
    paragraphs = "".join(f"<p>{i}. {LINE}</p>" for i in range(lines))
    return (
        f"<!doctype html><html><head><meta charset='gbk'><title>{title}</title></head>"
        f"<body><h1>{title}</h1>{paragraphs}</body></html>"
    )


def png_height(data: bytes) -> int:
    assert data[:8] == ev.PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return int(struct.unpack(">I", data[20:24])[0])


def warc_records(path: Path) -> list[tuple[str, str | None, int | None, bytes]]:
    """(type, target URI, HTTP status, payload) of each record."""
    from warcio.archiveiterator import ArchiveIterator

    out = []
    with path.open("rb") as handle:
        for record in ArchiveIterator(handle):
            status = None
            if record.rec_type == "response":
                status = int(record.http_headers.get_statuscode())
            out.append(
                (
                    record.rec_type,
                    record.rec_headers.get_header("WARC-Target-URI"),
                    status,
                    record.content_stream().read(),
                )
            )
    return out


def make_writable(path: Path) -> None:
    path.chmod(0o644)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def new_case(engine: Engine, number: str = "2026-0001") -> int:
    with write_transaction(engine) as conn:
        return int(
            conn.execute(
                insert(Case).values(number=number, title="县医院漏雨", origin="manual")
            ).inserted_primary_key[0]
        )


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# --- capture -----------------------------------------------------------------------------------


def test_capture_keeps_the_page_as_warc_and_full_page_screenshot(
    settings: Settings, engine: Engine, loopback: LoopbackServer
) -> None:
    loopback.route(
        "/post/1",
        Reply(body=long_page().encode("gbk"), content_type="text/html; charset=gbk"),
    )
    case_id = new_case(engine)
    published = datetime(2026, 11, 20, 6, 30, tzinfo=UTC)
    evidence_id = ev.capture_evidence(
        engine, settings, loopback.url("/post/1"), case_id=case_id, published_at=published
    )
    with engine.connect() as conn:
        row = ev.get_evidence(conn, evidence_id)
        trail = audit.entries(conn, subject=f"evidence:{evidence_id}")
    assert row["number"] == "原帖-001" and row["status"] == "captured"
    assert row["title"] == "县医院门诊楼漏雨"  # read from the GBK page
    assert row["http_status"] == 200 and row["published_at"] == published
    assert row["captured_at"] is not None and row["captured_at"].tzinfo is not None
    root = ev.evidence_root(settings)
    warc, png = root / row["warc_path"], root / row["png_path"]
    assert row["warc_path"].endswith(".warc.gz") and not Path(row["warc_path"]).is_absolute()

    records = warc_records(warc)
    assert records[0][0] == "warcinfo" and b"Tingfeng" in records[0][3]
    kinds = [(kind, uri) for kind, uri, _status, _body in records[1:]]
    assert kinds == [("request", loopback.url("/post/1")), ("response", loopback.url("/post/1"))]
    payload = records[2][3]
    assert records[2][2] == 200
    assert LINE in payload.decode("gbk") and payload == long_page().encode("gbk")

    data = png.read_bytes()
    assert png_height(data) > PNG_VIEWPORT_HEIGHT  # the whole page, not the first screen
    assert row["warc_sha256"] == hashlib.sha256(warc.read_bytes()).hexdigest()
    assert row["png_sha256"] == hashlib.sha256(data).hexdigest()
    assert loopback.hits("/post/1") == 1  # Chromium was shown the captured response

    assert [e["action"] for e in trail] == ["evidence.capture"]
    assert trail[0]["detail"]["number"] == "原帖-001"
    assert trail[0]["detail"]["png_sha256"] == row["png_sha256"]


def test_redirects_are_kept_hop_by_hop_and_a_404_is_still_captured(
    settings: Settings, loopback: LoopbackServer
) -> None:
    loopback.route("/old", Reply(301, headers={"Location": "/gone"}))
    loopback.route("/gone", Reply(404, body="<title>页面不存在</title>帖子已删除".encode()))
    capture = ev.capture_page(settings, loopback.url("/old"))
    assert capture.http_status == 404 and capture.title == "页面不存在"
    assert capture.final_url == loopback.url("/gone")
    records = warc_records(ev.evidence_root(settings) / capture.warc_path)
    responses = [(uri, status) for kind, uri, status, _ in records if kind == "response"]
    assert responses == [(loopback.url("/old"), 301), (loopback.url("/gone"), 404)]
    assert "帖子已删除".encode() in records[-1][3]


def test_numbering_per_case_and_category(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    case_a, case_b = new_case(engine, "2026-0001"), new_case(engine, "2026-0002")

    def fake(name: str) -> ev.Capture:
        return ev.Capture(
            url=f"https://example.com/{name}",
            final_url=f"https://example.com/{name}",
            http_status=200,
            title=name,
            captured_at=datetime.now(UTC),
            warc_path=f"2026/11/22/{name}.warc.gz",
            warc_sha256="a" * 64,
            png_path=f"2026/11/22/{name}.png",
            png_sha256="b" * 64,
        )

    def store(case_id: int | None, name: str, category: str = "post") -> str:
        with write_transaction(engine) as conn:
            eid = ev.store_evidence(
                conn, fake(name), url=fake(name).url, case_id=case_id, category=category
            )
            return str(ev.get_evidence(conn, eid)["number"])

    assert store(case_a, "p1") == "原帖-001"
    assert store(case_a, "r1", "reply") == "回应-001"
    assert store(case_a, "p2") == "原帖-002"
    assert store(case_b, "p3") == "原帖-001"
    assert store(None, "loose") == "原帖-001"
    with write_transaction(engine) as conn:
        failed = ev.store_evidence(
            conn, None, url="https://example.com/x", case_id=case_a, error="site down"
        )
        ev.update_handling_result(conn, failed, "已联系平台删除", None)
    with pytest.raises(ev.EvidenceError, match="reply"), write_transaction(engine) as conn:
        ev.store_evidence(conn, fake("y"), url="https://example.com/y", category="weibo")
    with pytest.raises(ev.EvidenceError, match="no case"), write_transaction(engine) as conn:
        ev.store_evidence(conn, fake("z"), url="https://example.com/z", case_id=999)
    with engine.connect() as conn:
        listed = ev.list_evidence(conn, case_a)
        row = ev.get_evidence(conn, failed)
        trail = audit.entries(conn, subject=f"evidence:{failed}")
        assert audit.verify(conn).ok
    assert [r["number"] for r in listed] == ["原帖-001", "原帖-002", "原帖-003", "回应-001"]
    assert row["status"] == "failed" and row["error"] == "site down"
    assert row["handling_result"] == "已联系平台删除"
    assert [e["action"] for e in trail] == ["evidence.handling_result", "evidence.capture"]
    engine.dispose()


# --- verification ------------------------------------------------------------------------------


def test_verify_finds_a_changed_screenshot_and_a_missing_warc(
    settings: Settings, engine: Engine, loopback: LoopbackServer
) -> None:
    loopback.route("/p", Reply(body=long_page(lines=40).encode("gbk")))
    evidence_id = ev.capture_evidence(engine, settings, loopback.url("/p"))
    with engine.connect() as conn:
        assert ev.verify_evidence(conn, settings, evidence_id).ok
        row = ev.get_evidence(conn, evidence_id)
    root = ev.evidence_root(settings)
    png = root / row["png_path"]
    make_writable(png)
    data = bytearray(png.read_bytes())
    data[len(data) // 2] ^= 0x01
    png.write_bytes(bytes(data))
    with engine.connect() as conn:
        check = ev.verify_evidence(conn, settings, evidence_id)
    states = {f.kind: f.state for f in check.files}
    assert not check.ok and states == {"warc": "intact", "png": "changed"}
    changed = next(f for f in check.files if f.kind == "png")
    assert changed.expected == row["png_sha256"] != changed.actual

    (root / row["warc_path"]).unlink()
    with engine.connect() as conn:
        states = {f.kind: f.state for f in ev.verify_evidence(conn, settings, evidence_id).files}
    assert states == {"warc": "missing", "png": "changed"}


def test_verify_catches_a_file_and_its_stored_hash_edited_together(
    settings: Settings, engine: Engine
) -> None:
    root = ev.evidence_root(settings)
    (root / "2026").mkdir(parents=True)
    (root / "2026/a.warc.gz").write_bytes(b"original")
    capture = ev.Capture(
        url="https://example.com/",
        final_url="https://example.com/",
        http_status=200,
        title="",
        captured_at=datetime.now(UTC),
        warc_path="2026/a.warc.gz",
        warc_sha256=hashlib.sha256(b"original").hexdigest(),
    )
    with write_transaction(engine) as conn:
        evidence_id = ev.store_evidence(conn, capture, url=capture.url)
    (root / "2026/a.warc.gz").write_bytes(b"forged")
    with write_transaction(engine) as conn:
        conn.execute(
            update(Evidence)
            .where(Evidence.id == evidence_id)
            .values(warc_sha256=hashlib.sha256(b"forged").hexdigest())
        )
    with engine.connect() as conn:
        check = ev.verify_evidence(conn, settings, evidence_id)
    assert not check.ok and check.files[0].state == "changed"
    assert "audit log" in check.files[0].note


# --- refusals and failures ---------------------------------------------------------------------


def test_an_unreachable_page_is_a_clear_error_and_recorded_as_failed(
    settings: Settings, engine: Engine
) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/post"
        with pytest.raises(ev.CaptureFailed, match="could not connect") as caught:
            ev.capture_evidence(engine, settings, url, category="repost")
    assert isinstance(caught.value, ev.EvidenceError)
    with engine.connect() as conn:
        row = ev.get_evidence(conn, caught.value.evidence_id)
    assert row["status"] == "failed" and row["number"] == "转发-001"
    assert "could not connect" in row["error"] and row["warc_path"] is None
    assert files_under(ev.evidence_root(settings)) == []


def test_a_missing_chromium_keeps_the_warc_of_a_compressed_page(
    settings: Settings, loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from warcio.archiveiterator import ArchiveIterator

    monkeypatch.setattr(ev, "chromium_path", lambda: "/nonexistent/chromium")
    page = "<title>标题</title>正文".encode()
    loopback.route("/p", Reply(body=gzip.compress(page), headers={"Content-Encoding": "gzip"}))
    capture = ev.capture_page(settings, loopback.url("/p"))
    assert capture.png_path is None and "Chromium is not installed" in capture.screenshot_error
    assert capture.title == "标题"
    warc = ev.evidence_root(settings) / capture.warc_path
    assert capture.warc_sha256 == hashlib.sha256(warc.read_bytes()).hexdigest()
    with warc.open("rb") as handle:
        response = next(r for r in ArchiveIterator(handle) if r.rec_type == "response")
        # The decoded page is stored, with headers that say so.
        assert response.http_headers.get_header("Content-Encoding") is None
        assert response.http_headers.get_header("Content-Length") == str(len(page))
        assert response.rec_headers.get_header("WARC-Tingfeng-Decoded") == "content-encoding=gzip"
        assert response.raw_stream.read() == page


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        body = b"internal"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def internal_service() -> Iterator[tuple[str, list[str]]]:
    """An "internal" server on 127.0.0.2 (loopback on Linux, outside 127.0.0.1/32)."""
    seen: ClassVar[list[str]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.2", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.2:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_a_hostile_page_cannot_make_chromium_reach_internal_addresses(
    settings: Settings, loopback: LoopbackServer, internal_service: tuple[str, list[str]]
) -> None:
    internal, seen = internal_service
    settings = settings.model_copy(update={"fetch_allowed_networks": ["127.0.0.1/32"]})
    loopback.route("/ok.png", Reply(body=b"not really a png", content_type="image/png"))
    hostile = (
        f"<html><head><title>恶意页面</title><link rel='icon' href='{internal}/favicon'>"
        f"<link rel='stylesheet' href='{internal}/css'></head><body>"
        f"<img src='{internal}/img'><img src='/ok.png'><iframe src='{internal}/frame'></iframe>"
        f"<script>fetch('{internal}/api', {{mode: 'no-cors'}}).catch(() => 0);"
        f"new Image().src = '{internal}/beacon';</script>" + "<p>正文</p>" * 100 + "</body></html>"
    )
    loopback.route("/hostile", Reply(body=hostile.encode()))
    capture = ev.capture_page(settings, loopback.url("/hostile"))
    assert capture.png_path is not None, capture.screenshot_error
    assert loopback.hits("/ok.png") == 1  # allowed sub-resources are fetched
    assert seen == []


def test_a_private_address_is_refused_without_leaving_anything(
    settings: Settings, engine: Engine, loopback: LoopbackServer
) -> None:
    settings = settings.model_copy(update={"fetch_allowed_networks": []})
    loopback.route("/p", Reply(body=b"<title>x</title>"))
    with pytest.raises(ev.EvidenceError, match="loopback address") as caught:
        ev.capture_evidence(engine, settings, loopback.url("/p"))
    assert not isinstance(caught.value, ev.CaptureFailed)
    with engine.connect() as conn:
        assert ev.list_evidence(conn) == []
    assert loopback.requests == []


# --- the command line --------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    base = {
        "TINGFENG_CONFIG": "/nonexistent.toml",
        "TINGFENG_DATA_DIR": str(tmp_path / "var"),
        "TINGFENG_FETCH_ALLOWED_NETWORKS": json.dumps(["127.0.0.1/32"]),
    }

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, ["--db", url, *args], env=base | (env or {}))

    return run


def test_cli_capture_list_and_verify_before_and_after_tampering(
    cli, loopback: LoopbackServer, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    loopback.route("/p", Reply(body=long_page(lines=30).encode("gbk")))
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    upgrade(engine)
    new_case(engine)
    engine.dispose()
    args = ["capture", loopback.url("/p"), "--case", "2026-0001", "--category", "reply"]
    result = cli("evidence", *args, "--published", "2026-11-20 14:30")
    assert result.exit_code == 0, result.output
    assert "回应-001" in result.stdout and "sha256" in result.stdout

    listed = json.loads(cli("evidence", "list", "--case", "1", "--json").stdout)
    assert [r["number"] for r in listed] == ["回应-001"]
    assert listed[0]["published_at"].startswith("2026-11-20T06:30")  # 14:30 in Shanghai
    evidence_id = str(listed[0]["id"])

    result = cli("evidence", "verify", evidence_id)
    assert result.exit_code == 0 and result.stdout.count("intact") == 2

    png = tmp_path / "var" / "evidence" / listed[0]["png_path"]
    make_writable(png)
    png.write_bytes(png.read_bytes() + b"\0")
    result = cli("evidence", "verify", evidence_id)
    assert result.exit_code == 1
    assert listed[0]["png_path"] in result.stderr and "changed" in result.stderr

    result = cli("evidence", "verify", "999")
    assert result.exit_code == 2 and "no evidence 999" in result.stderr


def test_cli_refuses_a_private_address_and_keeps_nothing(
    cli, loopback: LoopbackServer, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    loopback.route("/p", Reply(body=b"<title>x</title>"))
    result = cli(
        "evidence", "capture", loopback.url("/p"), env={"TINGFENG_FETCH_ALLOWED_NETWORKS": "[]"}
    )
    assert result.exit_code == 2
    assert "127.0.0.1 is a loopback address" in result.stderr
    assert "fetch_allowed_networks" in result.stderr
    assert files_under(tmp_path / "var" / "evidence") == []
    assert json.loads(cli("evidence", "list", "--json").stdout) == []
    assert loopback.requests == []


# --- evidence at alert time ------------------------------------------------------------------


def _alert_on_post(engine: Engine, url: str | None, level: str, *, n: int, age_h: float = 0) -> int:
    from datetime import timedelta

    from tingfeng.db.models import Alert, Post, Source

    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        sid = conn.execute(
            insert(Source).values(name=f"县融媒{n}", kind="feed", config={})
        ).inserted_primary_key[0]
        pid = conn.execute(
            insert(Post).values(
                uid=hashlib.md5(f"alert-post-{n}".encode()).hexdigest(), source_id=sid, url=url,
                content_hash=f"ah{n}", text_clean=LINE, title="县医院门诊楼漏雨",
                published_at=now - timedelta(hours=age_h),
            )
        ).inserted_primary_key[0]  # fmt: skip
        return int(
            conn.execute(
                insert(Alert).values(
                    rule_id=None, kind="rule", dedup_key=f"r:{n}", subject=f"post:{pid}",
                    post_id=pid, level=level, title="县医院门诊楼漏雨", status="open",
                    window_until=now + timedelta(hours=1),
                    created_at=now - timedelta(hours=age_h),
                )
            ).inserted_primary_key[0]
        )  # fmt: skip


def test_the_post_of_a_new_alert_is_captured_once_at_alert_time(
    settings: Settings, engine: Engine, loopback: LoopbackServer
) -> None:
    from tingfeng.cases.alert_evidence import AlertEvidence

    loopback.route(
        "/post/9", Reply(body=long_page().encode("gbk"), content_type="text/html; charset=gbk")
    )
    gone_page = "<html><title>帖子已删除</title></html>".encode()
    loopback.route(
        "/gone", Reply(status=404, body=gone_page, content_type="text/html; charset=utf-8")
    )
    serious = _alert_on_post(engine, loopback.url("/post/9"), "serious", n=1)
    gone = _alert_on_post(engine, loopback.url("/gone"), "major", n=2)
    _alert_on_post(engine, loopback.url("/post/9"), "general", n=3)  # below the default level
    _alert_on_post(engine, None, "critical", n=4)  # no address to capture
    _alert_on_post(engine, loopback.url("/post/9"), "critical", n=5, age_h=30)  # too old
    sweeper = AlertEvidence(engine, settings, 1.0, lambda: datetime.now(UTC))
    recorded = sweeper.sweep()
    assert len(recorded) == 2
    with engine.connect() as conn:
        rows = {r["alert_id"]: r for r in (ev.get_evidence(conn, i) for i in recorded)}
    assert set(rows) == {serious, gone}
    kept = rows[serious]
    assert kept["status"] == "captured" and kept["number"] == "原帖-001"
    assert kept["title"] == "县医院门诊楼漏雨" and kept["post_id"] is not None
    assert kept["case_id"] is None and kept["published_at"] is not None
    assert (ev.evidence_root(settings) / kept["png_path"]).is_file()
    assert rows[gone]["http_status"] == 404  # a deleted post is evidence too
    # Once: the next sweep finds nothing to do, here or in a new process.
    requests = len(loopback.requests)
    assert sweeper.sweep() == []
    assert AlertEvidence(engine, settings, 1.0, lambda: datetime.now(UTC)).sweep() == []
    assert len(loopback.requests) == requests
    off = settings.model_copy(update={"evidence_on_alert": "off"})
    _alert_on_post(engine, loopback.url("/post/9"), "critical", n=6)
    assert AlertEvidence(engine, off, 1.0, lambda: datetime.now(UTC)).sweep() == []


def test_a_case_opened_from_the_alert_takes_its_evidence_into_its_file(
    settings: Settings, engine: Engine
) -> None:
    from tingfeng.cases.service import open_case

    first = _alert_on_post(engine, "https://news.example.cn/1", "serious", n=11)
    second = _alert_on_post(engine, "https://news.example.cn/2", "serious", n=12)
    with write_transaction(engine) as conn:
        # As the sweeper leaves them: no case yet, numbered among evidence without a case.
        ev.store_evidence(
            conn, None, url="https://news.example.cn/1", error="timeout", alert_id=first
        )
        ev.store_evidence(
            conn, None, url="https://news.example.cn/2", error="timeout", alert_id=second
        )
    with write_transaction(engine) as conn:
        case_id = open_case(conn, None, settings, alert_id=second)
    with engine.connect() as conn:
        in_case = ev.list_evidence(conn, case_id)
        loose = [r for r in ev.list_evidence(conn) if r["case_id"] is None]
        trail = audit.entries(conn, subject=f"evidence:{in_case[0]['id']}")
    # It keeps its number; the case's own captures follow it.
    assert [(r["alert_id"], r["number"]) for r in in_case] == [(second, "原帖-002")]
    assert [(r["alert_id"], r["number"]) for r in loose] == [(first, "原帖-001")]
    attached = [e for e in trail if e["action"] == "evidence.attach"]
    assert attached and attached[0]["detail"]["case_id"] == case_id
    with write_transaction(engine) as conn:
        own = ev.store_evidence(
            conn, None, url="https://news.example.cn/3", error="x", case_id=case_id
        )
        # Numbers are never reused: the next evidence without a case is not 原帖-002 again.
        later = ev.store_evidence(conn, None, url="https://news.example.cn/4", error="x")
        assert ev.get_evidence(conn, own)["number"] == "原帖-003"
        assert ev.get_evidence(conn, later)["number"] == "原帖-003"
