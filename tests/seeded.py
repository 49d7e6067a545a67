"""A demo-seeded installation (tingfeng.demo.seed on the real CED posts: an office, topics,
alerts, events, cases in every state with replies and approvals, the audit chain), built once
per test process and copied for each test that needs one, plus evidence files, a report file
and a few rows whose values are hard to carry (JSON null beside SQL NULL, control characters,
many-digit floats)."""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select, text, update

from tests.conftest import CED
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import Case, Post, PostReading, Reply, Report
from tingfeng.settings import Settings

SEED_POSTS = 120
# A byline and a text with what a careless dump would mangle.
AWKWARD_TEXT = 'tab\there, newline\nthere, quote " backslash \\ 表情🙂 \u2028 end'
AWKWARD_FLOAT = 0.1 + 0.2  # 0.30000000000000004


def settings_for(root: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{root / 'tf.db'}", data_dir=root / "var")


def _evidence(settings: Settings) -> None:
    from tingfeng.cases import evidence as ev

    root = ev.evidence_root(settings)
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        cases = conn.execute(
            select(Case.id, Case.post_id, Case.created_at)
            .where(Case.id.in_(select(Reply.case_id)), Case.post_id.is_not(None))
            # Those from an event and its alert first: the export shows them too.
            .order_by(Case.event_id.is_(None), Case.alert_id.is_(None), Case.id)
            .limit(2)
        ).all()
        for n, case in enumerate(cases):
            stem = f"2026/11/22/seeded-{n}"
            (root / "2026/11/22").mkdir(parents=True, exist_ok=True)
            warc, png = f"{stem}.warc.gz", f"{stem}.png"
            (root / warc).write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
            (root / png).write_bytes(b"\x89PNG\r\n\x1a\n" + n.to_bytes(1, "big") * 300)
            capture = ev.Capture(
                url=f"https://weibo.example/{case.post_id}",
                final_url=f"https://weibo.example/{case.post_id}",
                http_status=200,
                title="原帖页面",
                captured_at=datetime.now(UTC),
                warc_path=warc,
                warc_sha256=hashlib.sha256((root / warc).read_bytes()).hexdigest(),
                png_path=png,
                png_sha256=hashlib.sha256((root / png).read_bytes()).hexdigest(),
            )
            for path in (root / warc, root / png):
                path.chmod(0o444)
            ev.store_evidence(
                conn, capture, url=capture.url, case_id=case.id, post_id=case.post_id,
                reported_at=case.created_at,
            )  # fmt: skip
        ev.store_evidence(
            conn, None, url="https://gone.example/x", case_id=cases[0].id, error="site down"
        )
    engine.dispose()


def _report_and_awkward_rows(settings: Settings) -> None:
    folder = Path(settings.data_dir) / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    body = "<html><body>日报 2026-11-21</body></html>".encode()
    path = folder / "daily-2026-11-21.html"
    path.write_bytes(body)
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        conn.execute(
            insert(Report).values(
                kind="daily", period="2026-11-21", number="〔2026〕第1期", format="html",
                title="舆情日报", path=str(path.resolve()), bytes=len(body),
                sha256=hashlib.sha256(body).hexdigest(), snapshot={"max_post_id": 1},
                created_by="test", created_at=datetime(2026, 11, 21, 0, 0, 1, 123456, UTC),
            )
        )  # fmt: skip
        first, second = conn.execute(select(Post.id).order_by(Post.id).limit(2)).scalars()
        # JSON null and SQL NULL are different values; a restore must keep them apart.
        conn.execute(text("UPDATE posts SET extra = 'null' WHERE id = :i"), {"i": first})
        conn.execute(text("UPDATE posts SET extra = NULL WHERE id = :i"), {"i": second})
        conn.execute(update(Post).where(Post.id == first).values(author=AWKWARD_TEXT))
        conn.execute(
            update(PostReading)
            .where(PostReading.post_id == first)
            .values(
                polarity_score=AWKWARD_FLOAT,
                analysed_at=datetime(2026, 11, 22, 1, 2, 3, 456789, UTC) - timedelta(days=1),
            )
        )
    engine.dispose()


@functools.cache
def _template() -> Path:
    if not CED.exists():
        raise RuntimeError(f"the CED data set is missing ({CED}): ../shared/data must be present")
    from tingfeng.demo.seed import seed_demo

    root = Path(tempfile.mkdtemp(prefix="tingfeng-seeded-"))
    atexit.register(shutil.rmtree, root, True)
    settings = settings_for(root)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    seed_demo(settings, engine, ced_path=CED, posts=SEED_POSTS, evidence=False)
    engine.dispose()
    _evidence(settings)
    _report_and_awkward_rows(settings)
    return root


def seeded_into(settings: Settings) -> Settings:
    """A copy of the seeded installation at `settings`' database (SQLite) and data directory."""
    template = _template()
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        if (template / f"tf.db{suffix}").exists():
            shutil.copy2(template / f"tf.db{suffix}", f"{database}{suffix}")
    shutil.copytree(template / "var", settings.data_dir, dirs_exist_ok=True)
    # Reports are recorded with absolute paths: point the copy's at its own files.
    engine = make_engine(settings.database_url)
    with write_transaction(engine) as conn:
        old, new = str((template / "var").resolve()), str(Path(settings.data_dir).resolve())
        conn.execute(
            text("UPDATE reports SET path = :new || substr(path, :n) WHERE path LIKE :old"),
            {"new": new, "n": len(old) + 1, "old": old + "/%"},
        )
    engine.dispose()
    return settings


def seeded_installation(dest: Path) -> Settings:
    """A copy of the seeded installation (database and data directory) under `dest`."""
    return seeded_into(settings_for(dest))
