"""kill -9 in the middle of a large ingest, start again, finish: every post stored once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select

from tingfeng.collect.connectors.imports import read_items
from tingfeng.db.engine import make_engine
from tingfeng.db.models import Post
from tingfeng.search.service import matching_ids

CED = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "rumor" / "ced" / "cascades.jsonl.gz"
)
CLI = [sys.executable, "-m", "tingfeng.cli"]
LIMIT = 30_000


def _count(db_path: Path) -> int:
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM posts").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [3_000, 12_000])
def test_kill_9_mid_ingest_then_finish_stores_each_post_once(
    tmp_path: Path, kill_after: int
) -> None:
    db_path = tmp_path / "crash.db"
    db = f"sqlite:///{db_path}"
    env = os.environ | {"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_INGEST_BATCH_SIZE": "500"}
    cmd = [*CLI, "--db", db, "ingest", str(CED), "--limit", str(LIMIT)]
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _count(db_path) < kill_after and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert victim.poll() is None, "the ingest finished before it could be killed: raise LIMIT"
    helpers = psutil.Process(victim.pid).children(recursive=True)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    # Its analysis helpers notice and exit rather than wait for work for ever.
    _, alive = psutil.wait_procs(helpers, timeout=10)
    assert not alive
    partial = _count(db_path)
    assert 0 < partial < LIMIT

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    expected = len(
        {(i.platform, i.external_id) for i in islice(read_items(CED, format="ced"), LIMIT)}
    )
    assert summary["stored"] == expected - partial
    engine = make_engine(db)
    with engine.connect() as conn:
        assert conn.execute(select(func.count(Post.id))).scalar_one() == expected
        assert conn.execute(select(func.count(func.distinct(Post.uid)))).scalar_one() == expected
        # The index holds every stored post once: a search equals a scan of the table.
        rows = conn.execute(select(Post.id, Post.text_norm, Post.title_norm)).all()
        for term in ("转发", "谣言", "微博"):
            assert matching_ids(conn, term) == {
                pid for pid, t, ti in rows if term in t or term in ti
            }
    engine.dispose()
