"""`tingfeng backup` / `tingfeng restore` on a demo-seeded installation: SQLite → SQLite,
SQLite → PostgreSQL → SQLite, every table compared row by row, the files, the audit chain and
evidence hashes intact, search and ingest working on the restored database; damaged, foreign,
newer and misplaced archives refused before anything is touched."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner, Result

from tests.seeded import AWKWARD_FLOAT, AWKWARD_TEXT, seeded_installation, settings_for
from tingfeng import audit
from tingfeng.backup import compare, known_revisions, migrate_to
from tingfeng.cases import evidence as ev
from tingfeng.cli.main import app
from tingfeng.db.engine import make_engine
from tingfeng.db.models import Evidence, Post, PostReading, Report
from tingfeng.settings import Settings

# Reports keep absolute paths, which a restore points at the new data directory.
PATHS = {"reports": {"path"}}
TERM = "转发"


def cli(settings: Settings, *args: str) -> Result:
    env = {"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_DATA_DIR": str(settings.data_dir)}
    return CliRunner().invoke(app, ["--db", settings.database_url, *args], env=env)


def backup_of(settings: Settings, out: Path) -> dict:
    result = cli(settings, "backup", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def restore(settings: Settings, archive: Path) -> dict:
    result = cli(settings, "restore", str(archive), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def refused(settings: Settings, *args: str) -> str:
    result = cli(settings, *args)
    assert result.exit_code == 2, result.output
    return result.stderr


def manifest_of(archive: Path) -> dict:
    with zipfile.ZipFile(archive) as zf:
        return json.loads(zf.read("manifest.json"))


def search_ids(url: str) -> set[int]:
    from tingfeng.search.service import matching_ids

    engine = make_engine(url)
    with engine.connect() as conn:
        found = matching_ids(conn, TERM)
    engine.dispose()
    return found


def ingest_new(settings: Settings, tmp: Path) -> list[int]:
    from tingfeng.ingest.files import ingest_file

    path = tmp / "new.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"n{i}", "text": f"恢复之后的新帖文{i}号 转发"}, ensure_ascii=False)
            + "\n"
            for i in range(3)
        ),
        encoding="utf-8",
    )
    engine = make_engine(settings.database_url)
    stats = ingest_file(settings, engine, path, mapping={"id": "id", "text": "text"})
    assert stats.stored == 3
    with engine.connect() as conn:
        ids = list(conn.execute(select(Post.id).order_by(Post.id.desc()).limit(3)).scalars())
    engine.dispose()
    return ids


@pytest.fixture
def source(tmp_path: Path) -> Settings:
    return seeded_installation(tmp_path / "source")


def test_sqlite_to_sqlite_keeps_every_row_file_and_hash(source: Settings, tmp_path: Path) -> None:
    archive = tmp_path / "backup.zip"
    made = backup_of(source, archive)
    assert made["rows"] > 500 and made["files"] == 6  # 2×(WARC, PNG), a report, secret_key
    assert (archive.stat().st_mode & 0o777) == 0o600
    checked = cli(source, "backup", "--verify", str(archive))
    assert checked.exit_code == 0 and "every checksum matches" in checked.stdout

    target = settings_for(tmp_path / "restored")
    done = restore(target, archive)
    assert done["rows"] == made["rows"] and all(t["checked"] for t in done["tables"])
    assert done["indexed_posts"] > 100 and done["files_written"] == 6
    assert done["report_paths_moved"] == 1

    a, b = make_engine(source.database_url), make_engine(target.database_url)
    comparison = compare(a, b, ignore=PATHS)
    assert comparison.same, "\n".join(comparison.lines())
    posts = next(t for t in comparison.tables if t.name == "posts")
    assert posts.rows_a == posts.rows_b > 100
    with b.connect() as conn:
        # Exactly: JSON null is not SQL NULL, control characters and float digits survive.
        first, second = conn.execute(select(Post.id).order_by(Post.id).limit(2)).scalars()
        extras = dict(conn.execute(text("SELECT id, extra FROM posts WHERE id IN (:a, :b)"),
                                   {"a": first, "b": second}).all())  # fmt: skip
        assert extras == {first: "null", second: None}
        assert conn.execute(select(Post.author).where(Post.id == first)).scalar() == AWKWARD_TEXT
        score = select(PostReading.polarity_score).where(PostReading.post_id == first)
        assert conn.execute(score).scalar() == AWKWARD_FLOAT
        assert audit.verify(conn).ok and audit.verify(conn).entries > 50
        evidence_ids = list(
            conn.execute(select(Evidence.id).where(Evidence.png_path.is_not(None))).scalars()
        )
        assert len(evidence_ids) == 2
        assert all(ev.verify_evidence(conn, target, i).ok for i in evidence_ids)
        report = conn.execute(select(Report.path, Report.sha256)).one()
    moved = Path(report.path)
    assert moved.is_relative_to(Path(target.data_dir).resolve())
    assert hashlib.sha256(moved.read_bytes()).hexdigest() == report.sha256
    assert (Path(target.data_dir) / "secret_key").read_bytes() == (
        Path(source.data_dir) / "secret_key"
    ).read_bytes()
    png = next((Path(target.data_dir) / "evidence").rglob("*.png"))
    assert (png.stat().st_mode & 0o777) == 0o444  # evidence stays read-only

    found = search_ids(source.database_url)
    assert found and search_ids(target.database_url) == found
    with b.connect() as conn:
        top = conn.execute(select(func.max(Post.id))).scalar()
    new_ids = ingest_new(target, tmp_path)
    assert min(new_ids) > top
    assert set(new_ids) <= search_ids(target.database_url)
    a.dispose()
    b.dispose()


def test_sqlite_to_postgresql_and_back(
    source: Settings, fresh_postgres_db: str, tmp_path: Path
) -> None:
    first = tmp_path / "from-sqlite.zip"
    backup_of(source, first)
    pg = Settings(database_url=fresh_postgres_db, data_dir=tmp_path / "pg-var")
    done = restore(pg, first)
    assert done["sequences_moved"] > 20
    a, b = make_engine(source.database_url), make_engine(pg.database_url)
    comparison = compare(a, b, ignore=PATHS)
    assert comparison.same, "\n".join(comparison.lines())
    assert search_ids(pg.database_url) == search_ids(source.database_url)

    second = tmp_path / "from-postgres.zip"
    backup_of(pg, second)
    # The same rows give the same bytes whichever database they were read from.
    tables = {t["name"]: t["sha256"] for t in manifest_of(first)["tables"]}
    again = {t["name"]: t["sha256"] for t in manifest_of(second)["tables"]}
    changed = {name for name in tables if tables[name] != again[name]}
    assert changed <= {"reports"} and manifest_of(second)["database"]["dialect"] == "postgresql"

    back = settings_for(tmp_path / "back")
    restore(back, second)
    c = make_engine(back.database_url)
    comparison = compare(a, c, ignore=PATHS)
    assert comparison.same, "\n".join(comparison.lines())
    with c.connect() as conn:
        assert audit.verify(conn).ok

    # New rows on the restored PostgreSQL database take ids after the restored ones.
    with b.connect() as conn:
        top_post = conn.execute(select(func.max(Post.id))).scalar()
    new_ids = ingest_new(pg, tmp_path)
    assert min(new_ids) > top_post
    for engine in (a, b, c):
        engine.dispose()


def test_damaged_foreign_and_newer_archives_are_refused_before_anything_is_touched(
    source: Settings, tmp_path: Path
) -> None:
    archive = tmp_path / "good.zip"
    backup_of(source, archive)
    target = settings_for(tmp_path / "t")
    database = Path(target.database_url.removeprefix("sqlite:///"))

    cut = tmp_path / "cut.zip"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    assert "damaged (cut short?)" in refused(target, "restore", str(cut))

    other = tmp_path / "notes.txt"
    other.write_text("not a backup")
    assert "not a Tingfeng backup" in refused(target, "backup", "--verify", str(other))
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("readme.txt", "hello")
    assert "no manifest.json" in refused(target, "restore", "--check", str(foreign))

    def rewrite(name: str, change_member: str | None, change_manifest=None) -> Path:  # type: ignore[no-untyped-def]
        out = tmp_path / name
        with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename == change_member:
                    data = data.replace(b"\xe8\xbd\xac", b"\xe8\xbd\xad", 1)  # one character
                if info.filename == "manifest.json" and change_manifest:
                    data = json.dumps(change_manifest(json.loads(data))).encode()
                dst.writestr(info, data)
        return out

    tampered = rewrite("tampered.zip", "db/posts.jsonl")
    message = refused(target, "restore", str(tampered))
    assert "db/posts.jsonl does not match its checksum" in message

    def newer(m: dict) -> dict:
        m["database"]["schema_revision"] = "9999"
        return m

    message = refused(target, "restore", str(rewrite("newer.zip", None, newer)))
    assert "9999, newer than this version" in message and "upgrade Tingfeng" in message
    assert not database.exists()  # nothing was created for any of them

    restore(target, archive)
    message = refused(target, "restore", str(archive))
    assert "already holds data" in message and "new, empty database" in message
    engine = make_engine(target.database_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Post)).scalar() > 100
    engine.dispose()


def test_a_backup_of_an_older_schema_is_restored_and_upgraded(tmp_path: Path) -> None:
    old = settings_for(tmp_path / "old")
    engine = make_engine(old.database_url)
    revision = known_revisions()[-2]
    migrate_to(engine, revision)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO departments (id, name, created_at) VALUES (3, '城管局', :t)"),
            {"t": "2026-11-20 08:00:00.000000"},
        )
    engine.dispose()
    archive = tmp_path / "old.zip"
    assert backup_of(old, archive)["schema_revision"] == revision

    target = settings_for(tmp_path / "new")
    done = restore(target, archive)
    assert done["schema_revision"] == {"backup": revision, "database": known_revisions()[-1]}
    engine = make_engine(target.database_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM departments WHERE id = 3")).scalar() == "城管局"
        assert (
            conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            == (known_revisions()[-1])
        )
    engine.dispose()


def test_a_row_postgresql_cannot_hold_rolls_the_whole_restore_back(
    source: Settings, fresh_postgres_db: str, tmp_path: Path
) -> None:
    engine = make_engine(source.database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE posts SET text_clean = 'a' || char(0) || 'b' WHERE id = 5"))
    engine.dispose()
    archive = tmp_path / "nul.zip"
    backup_of(source, archive)
    pg = Settings(database_url=fresh_postgres_db, data_dir=tmp_path / "pg-var")
    message = refused(pg, "restore", str(archive))
    assert "could not load table posts" in message
    engine = make_engine(fresh_postgres_db)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Post)).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM departments")).scalar() == 0
    engine.dispose()
