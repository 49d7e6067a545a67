"""The work queue end to end: PostgreSQL + a real Redis + two worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tingfeng.collect.connectors.imports import read_items
from tingfeng.db.engine import make_engine
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import FetchLog, Post

CED = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "rumor" / "ced" / "cascades.jsonl.gz"
)
CLI = [sys.executable, "-m", "tingfeng.cli"]


def _env() -> dict[str, str]:
    return os.environ | {"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_LOG_LEVEL": "WARNING"}


@pytest.mark.slow
def test_ingest_through_redis_with_two_worker_processes(
    fresh_postgres_db: str, fresh_redis_url: str
) -> None:
    engine = make_engine(fresh_postgres_db)
    upgrade(engine)
    workers = [
        subprocess.Popen(
            [
                *CLI,
                "--db",
                fresh_postgres_db,
                "--queue",
                fresh_redis_url,
                "serve",
                "--role",
                "worker",
                "--workers",
                "2",
            ],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        # Wait until both consumers poll Redis, so neither can take every batch alone.
        import redis

        client = redis.Redis.from_url(fresh_redis_url)
        deadline = time.monotonic() + 30
        while len(client.client_list()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        limit = 6000
        proc = subprocess.run(
            [
                *CLI,
                "--db",
                fresh_postgres_db,
                "--queue",
                fresh_redis_url,
                "ingest",
                str(CED),
                "--limit",
                str(limit),
            ],
            env=_env() | {"TINGFENG_INGEST_BATCH_SIZE": "500"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        expected = len(
            {(i.platform, i.external_id) for i in islice(read_items(CED, format="ced"), limit)}
        )
        assert summary["read"] == limit
        assert summary["stored"] == expected
        with engine.connect() as conn:
            assert conn.execute(select(func.count(Post.id))).scalar_one() == expected
            assert conn.execute(select(func.count(FetchLog.id))).scalar_one() == limit // 500
            ran_on = set(conn.execute(select(FetchLog.worker)).scalars())
        # Both worker processes took batches, and both are still running.
        assert {f"{p.pid}" for p in workers} == {w.rsplit(":", 1)[1] for w in ran_on}
        assert all(w.poll() is None for w in workers)
    finally:
        for w in workers:
            w.send_signal(signal.SIGINT)
        for w in workers:
            try:
                w.wait(timeout=20)
            except subprocess.TimeoutExpired:
                w.kill()
        engine.dispose()


def test_embedded_queue_keeps_tasks_across_a_restart(settings) -> None:  # type: ignore[no-untyped-def]
    """Work queued in the embedded (SQLite) queue survives the process that queued it."""
    from tingfeng.collect.items import RawItem
    from tingfeng.collect.sources import add_source
    from tingfeng.db.engine import write_transaction
    from tingfeng.tasks import build_queue

    engine = make_engine(settings.database_url)
    upgrade(engine)
    with write_transaction(engine) as conn:
        sid = add_source(conn, name="推送", kind="push", config={}).id
    before = build_queue(settings)
    before.enqueue_items(sid, None, [RawItem(text="重启前排队的帖子", external_id="q1")])
    before.huey.storage.close()  # the process goes away before any worker ran

    after = build_queue(settings)
    assert after.huey.pending_count() == 1
    after.huey.execute(after.huey.dequeue())
    with engine.connect() as conn:
        assert conn.execute(select(Post.text_clean)).scalars().all() == ["重启前排队的帖子"]
        assert conn.execute(select(func.count(FetchLog.id))).scalar_one() == 1
    assert after.huey.pending_count() == 0
    engine.dispose()
