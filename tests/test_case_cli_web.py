"""Cases from the command line (the contract later checks use) and on the web pages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from typer.testing import CliRunner

from tests.loopback import Reply
from tingfeng.cli.main import app
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import Post, Source, User
from tingfeng.settings import Settings


@pytest.fixture
def cli(settings: Settings, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TINGFENG_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TINGFENG_FETCH_ALLOWED_NETWORKS", '["127.0.0.0/8"]')
    runner = CliRunner()

    def run(*args: str, check: bool = True):  # type: ignore[no-untyped-def]
        result = runner.invoke(app, ["--db", settings.database_url, *args])
        if check:
            assert result.exit_code == 0, result.stdout + result.stderr
        return result

    return run


def _office(cli) -> None:  # type: ignore[no-untyped-def]
    cli("department", "add", "县委网信办")
    cli("department", "add", "城管局", "--parent", "县委网信办")
    cli("user", "add", "--username", "ana", "--password", "analyst-pw-1", "--role", "analyst")
    cli("user", "add", "--username", "boss", "--password", "approver-pw-1", "--role", "approver",
        "--department", "县委网信办")  # fmt: skip
    cli("user", "add", "--username", "cg", "--password", "handler-pw-1", "--role", "经办人",
        "--department", "城管局")  # fmt: skip
    cli("case", "route-add", "城管", "--department", "城管局", "--keyword", "占道")


def test_user_and_department_commands_keep_only_an_argon2_hash(cli, settings) -> None:  # type: ignore[no-untyped-def]
    from tingfeng.office.people import check_password

    _office(cli)
    users = json.loads(cli("user", "list", "--json").stdout)
    assert [(u["username"], u["role"]) for u in users] == [
        ("ana", "analyst"), ("boss", "approver"), ("cg", "handler"),
    ]  # fmt: skip
    assert json.loads(cli("department", "list", "--json").stdout)[1] == {
        "id": 2, "name": "城管局", "parent_id": 1,
    }  # fmt: skip
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        stored = conn.execute(select(User.password_hash).where(User.username == "cg")).scalar()
        assert stored.startswith("$argon2id$") and "handler-pw-1" not in stored
        assert check_password(conn, "cg", "handler-pw-1").role == "handler"
        assert check_password(conn, "cg", "wrong-password") is None
        assert check_password(conn, "nobody", "handler-pw-1") is None
    engine.dispose()
    short = cli("user", "add", "--username", "x", "--password", "short", "--role", "viewer",
                check=False)  # fmt: skip
    assert short.exit_code == 2 and "at least 8 characters" in short.stderr
    bad = cli("user", "add", "--username", "y", "--password", "long-enough", "--role", "boss",
              check=False)  # fmt: skip
    assert bad.exit_code == 2 and "Unknown role 'boss'" in bad.stderr
    dup = cli("department", "add", "城管局", check=False)
    assert dup.exit_code == 2 and "already a department" in dup.stderr
    assert "x" not in {u["username"] for u in json.loads(cli("user", "list", "--json").stdout)}


def test_a_case_through_the_command_line_with_role_checks_and_the_audit_chain(
    cli, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    _office(cli)
    opened = cli("case", "open", "--as", "ana", "--title", "某路段占道经营严重", "--level", "较大")
    # Numbered per year of opening: 2026-0001.
    assert opened.stdout.startswith("case 20") and "-0001 opened (id 1)" in opened.stdout
    assert "suggested department: 城管局 (关键词 占道)" in opened.stdout
    cli("case", "act", "1", "assess", "--as", "ana", "--handling", "交城管局处置")
    refused = cli("case", "act", "1", "approve_handling", "--as", "cg", check=False)
    assert refused.exit_code == 2 and "handler role may not 批准处置" in refused.stderr
    cli("case", "act", "1", "approve-handling", "--as", "boss")
    cli("case", "act", "1", "assign", "--as", "ana")
    cli("case", "act", "1", "accept", "--as", "cg")
    cli("case", "task", "1", "现场核实", "--as", "cg", "--kind", "verify", "--due", "2wh")
    cli("case", "progress", "1", "已到现场", "--as", "cg")
    cli("case", "reply", "1", "已依法清理占道摊点。", "--as", "cg", "--submit")
    cli("case", "reply-approve", "1", "--as", "boss")
    bad_url = cli("case", "publish", "1", "--as", "cg", "--platform", "微博", "--account", "@城管",
                  "--url", "javascript:alert(1)", check=False)  # fmt: skip
    assert bad_url.exit_code == 2 and "not a web address" in bad_url.stderr
    cli("case", "publish", "1", "--as", "cg", "--platform", "微博", "--account", "@城管",
        "--url", "https://weibo.com/1/2")  # fmt: skip
    shown = json.loads(cli("case", "show", "1", "--as", "cg", "--json").stdout)
    assert shown["state"] == "published" and shown["tasks"][0]["kind"] == "verify"
    assert [a["name"] for a in shown["actions"]] == ["follow_up"]
    ledger = json.loads(cli("case", "ledger", "--json").stdout)
    assert ledger[0]["last_progress"] == "已到现场" and ledger[0]["department"] == "城管局"
    out = tmp_path / "台账.xlsx"
    assert "1 cases written" in cli("case", "ledger", "--export", str(out)).stdout
    assert out.read_bytes()[:2] == b"PK"
    wrong = cli("case", "ledger", "--export", str(tmp_path / "l.pdf"), check=False)
    assert wrong.exit_code == 2 and ".csv or .xlsx" in wrong.stderr

    verified = cli("audit", "verify")
    count = int(verified.stdout.split(":")[1].split()[0])
    assert count >= 15  # departments, users, the rule and every step of the case
    listed = json.loads(cli("audit", "list", "--subject", "case:1", "--json").stdout)
    assert listed[0]["action"] == "case.publish" and listed[0]["actor"] == "cg"


def test_case_capture_keeps_the_key_posts_pages(cli, settings, loopback) -> None:  # type: ignore[no-untyped-def]
    _office(cli)
    loopback.route(
        "/weibo/1",
        Reply(
            body="<html><head><title>占道经营</title></head><body><p>某路段占道经营严重</p>"
            "</body></html>".encode()
        ),
    )
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with write_transaction(engine) as conn:
        sid = conn.execute(
            insert(Source).values(name="微博", kind="push", config={})
        ).inserted_primary_key[0]
        pid = conn.execute(
            insert(Post).values(
                uid="u1",
                source_id=sid,
                content_hash="h",
                url=loopback.url("/weibo/1"),
                title="占道经营",
                text_clean="某路段占道经营严重",
            )
        ).inserted_primary_key[0]
    engine.dispose()
    cli("case", "open", "--as", "ana", "--post", str(pid))
    captured = cli("case", "capture", "1", "--as", "ana")
    assert f"post {pid}: evidence 1" in captured.stdout
    again = cli("case", "capture", "1", "--as", "ana")
    assert "nothing to capture" in again.stdout  # never twice
    shown = json.loads(cli("case", "show", "1", "--json").stdout)
    evidence = shown["evidence"][0]
    assert evidence["number"] == "原帖-001" and evidence["title"] == "占道经营"
    assert len(evidence["warc_sha256"]) == 64
    assert cli("evidence", "verify", "1").exit_code == 0
    warc = Path(settings.data_dir) / "evidence" / evidence["warc_path"]
    warc.chmod(0o644)
    warc.write_bytes(warc.read_bytes() + b"x")
    assert cli("evidence", "verify", "1", check=False).exit_code == 1


def test_case_pages_and_ledger_download(web, cli) -> None:  # type: ignore[no-untyped-def]
    client, _ = web
    _office(cli)
    cli(
        "case",
        "open",
        "--as",
        "ana",
        "--title",
        "<script>window.x=1</script>占道",
        "--level",
        "重大",
    )
    cli("case", "act", "1", "assess", "--as", "ana", "--handling", "交办")
    page = client.get("/cases")
    assert page.status_code == 200 and "-0001" in page.text
    assert "<script>window.x=1</script>" not in page.text and "&lt;script&gt;" in page.text
    detail = client.get("/cases/1")
    assert "已研判" in detail.text and "批准处置" in detail.text and "签收" in detail.text
    # The audit trail, for those who may read the audit log (the administrator here).
    trail = detail.text.split('id="audit-trail"')[1]
    assert trail.index("case.open") < trail.index("case.assess")
    assert client.get("/cases/99").status_code == 404
    api = client.get("/api/v1/cases/1").json()
    assert api["state"] == "assessed" and api["history"][1]["action"] == "assess"
    ledger = client.get("/ledger")
    assert "重点舆情台账" in ledger.text and "&lt;script&gt;" in ledger.text
    csv = client.get("/api/v1/ledger", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.content.decode("utf-8-sig").splitlines()[1].split(",")[2] == "重大"
    entries = client.get("/api/v1/audit", params={"subject": "case:1"}).json()["entries"]
    assert [e["action"] for e in entries] == ["case.assess", "case.open"]
