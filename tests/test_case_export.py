"""Export of everything about a case (`tingfeng case export`, GET /api/v1/cases/{id}/export) from a
demo-seeded installation: the case with its history, replies, evidence records and files, the
event, alerts, posts with readings and audit entries, every member's SHA-256, a case.html in
which a hostile post title stays text, the export itself in the audit log, and the department
scope of the case API."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner, Result

from tests.conftest import add_person, sign_in
from tests.seeded import seeded_installation, seeded_into
from tingfeng import audit
from tingfeng.cases import evidence as ev
from tingfeng.cli.main import app
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.models import Case, Department, Evidence, Post
from tingfeng.settings import Settings

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def cli(settings: Settings, *args: str) -> Result:
    env = {"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_DATA_DIR": str(settings.data_dir)}
    return CliRunner().invoke(app, ["--db", settings.database_url, *args], env=env)


def case_with_evidence(settings: Settings) -> Any:
    """The first case with captured evidence; its post gets a hostile title and text."""
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        case_id = conn.execute(
            select(Evidence.case_id).where(Evidence.png_path.is_not(None)).order_by(Evidence.id)
        ).scalar()
        case = conn.execute(select(Case).where(Case.id == case_id)).one()
        conn.execute(
            update(Post).where(Post.id == case.post_id).values(title=HOSTILE, text_clean=HOSTILE)
        )
    engine.dispose()
    return case


def other_department(conn: Any, case: Any) -> str:
    """A department whose people do not see `case` (not its own, not one above it)."""
    rows = conn.execute(select(Department.id, Department.name, Department.parent_id)).all()
    return next(r.name for r in rows if r.id != case.department_id and r.parent_id is not None)


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def check_checksums(files: dict[str, bytes]) -> dict[str, Any]:
    manifest = json.loads(files["manifest.json"])
    listed = {m["name"]: m for m in manifest["files"]}
    assert set(listed) == set(files) - {"manifest.json", "SHA256SUMS"}
    for name, entry in listed.items():
        assert hashlib.sha256(files[name]).hexdigest() == entry["sha256"], name
        assert len(files[name]) == entry["bytes"]
    sums = dict(line.split("  ")[::-1] for line in files["SHA256SUMS"].decode().splitlines())
    assert sums == {name: e["sha256"] for name, e in listed.items()}
    return manifest


def test_cli_export_holds_everything_with_checksums_and_escapes_posts(tmp_path: Path) -> None:
    settings = seeded_installation(tmp_path / "inst")
    case = case_with_evidence(settings)
    out = tmp_path / "case.zip"
    result = cli(settings, "case", "export", case.number, "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    data = out.read_bytes()
    assert summary["sha256"] == hashlib.sha256(data).hexdigest()
    files = members(data)
    check_checksums(files)
    assert {"case.json", "case.html", "posts.jsonl", "audit.json"} <= set(files)

    exported = json.loads(files["case.json"])
    detail = exported["case"]
    assert detail["number"] == case.number and detail["history"][0]["action"] == "open"
    assert detail["replies"] and detail["replies"][0]["versions"][0]["text"]
    assert exported["event"]["id"] == case.event_id
    assert case.alert_id in {a["id"] for a in exported["alerts"]}
    statuses = sorted(e["status"] for e in detail["evidence"])
    assert statuses == ["captured", "failed"]
    # The evidence files, byte for byte, checked against the hashes recorded at capture.
    root = ev.evidence_root(settings)
    captured = next(e for e in detail["evidence"] if e["status"] == "captured")
    for kind, suffix in (("warc", ".warc.gz"), ("png", ".png")):
        name = f"evidence/{captured['number']}{suffix}"
        assert files[name] == (root / captured[f"{kind}_path"]).read_bytes()
    assert {f["state"] for f in exported["evidence_files"]} == {"intact"}

    posts = [json.loads(line) for line in files["posts.jsonl"].splitlines()]
    own = next(p for p in posts if p["id"] == case.post_id)
    assert own["title"] == HOSTILE and own["reading"]["polarity"]
    assert (
        exported["posts"]["count"] == len(posts)
        and case.post_id in exported["posts"]["key_post_ids"]
    )
    actions = {e["action"] for e in json.loads(files["audit.json"])}
    assert {"case.open", "evidence.capture", "reply.draft"} <= actions

    page = files["case.html"].decode()
    assert HOSTILE not in page and "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "default-src 'none'" in page and case.number in page

    # The export is on record, with the SHA-256 of what was handed out.
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        entry = audit.entries(conn, subject=f"case:{case.id}", limit=1)[0]
        assert audit.verify(conn).ok
        other = other_department(conn, case)
    engine.dispose()
    assert entry["action"] == "case.export" and entry["detail"]["sha256"] == summary["sha256"]

    add_person(settings, "outsider", "handler", other)
    refused = cli(settings, "case", "export", case.number, "--out", str(tmp_path / "x.zip"),
                  "--as", "outsider")  # fmt: skip
    assert refused.exit_code == 2 and "may not see" in refused.stderr
    assert not (tmp_path / "x.zip").exists()


@pytest.fixture
def seeded(settings: Settings) -> Settings:
    """The seeded installation at the `settings` paths, before `web` starts on them."""
    return seeded_into(settings)


def test_api_export_follows_the_case_scope(seeded: Settings, web) -> None:  # type: ignore[no-untyped-def]
    client, settings = web
    case = case_with_evidence(settings)
    r = client.get(f"/api/v1/cases/{case.id}/export")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert f"case-{case.number}.zip" in r.headers["content-disposition"]
    assert r.headers["x-content-sha256"] == hashlib.sha256(r.content).hexdigest()
    files = members(r.content)
    check_checksums(files)
    assert json.loads(files["case.json"])["exported_by"] == "tester"
    assert "audit.json" in files and HOSTILE not in files["case.html"].decode()
    assert client.get("/api/v1/cases/99999/export").status_code == 404

    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        other = other_department(conn, case)
    engine.dispose()
    add_person(settings, "outsider", "handler", other)
    add_person(settings, "reader", "viewer", other)
    base = str(client.base_url)
    with httpx.Client(base_url=base, timeout=30) as stranger:
        assert stranger.get(f"/api/v1/cases/{case.id}/export").status_code == 401
        sign_in(stranger, "outsider")
        denied = stranger.get(f"/api/v1/cases/{case.id}/export")
        assert denied.status_code == 403 and "may not see" in denied.text
    with httpx.Client(base_url=base, timeout=30) as viewer:
        sign_in(viewer, "reader")
        # A viewer reads every case, but not the audit log.
        got = viewer.get(f"/api/v1/cases/{case.id}/export")
        assert got.status_code == 200
        files = members(got.content)
        assert "audit.json" not in files
        assert json.loads(files["case.json"])["audit"]["file"] is None
