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

CED = Path(__file__).resolve().parents[2] / "shared" / "data" / "rumor" / "ced" / "cascades.jsonl.gz"
CLI = [sys.executable, "-m", "tingfeng.cli"]


def _env() -> dict[str, str]:
    return os.environ | {"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_LOG_LEVEL": "WARNING"}


@pytest.mark.slow
def test_ingest_through_redis_with_two_worker_processes(fresh_postgres_db: str, fresh_redis_url: str) -> None:
    engine = make_engine(fresh_postgres_db)
    upgrade(engine)
    workers = [
        subprocess.Popen([*CLI, "--db", fresh_postgres_db, "--queue", fresh_redis_url, "serve",
                          "--role", "worker", "--workers", "2"], env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
            [*CLI, "--db", fresh_postgres_db, "--queue", fresh_redis_url, "ingest", str(CED),
             "--limit", str(limit)],
            env=_env() | {"TINGFENG_INGEST_BATCH_SIZE": "500"}, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        expected = len({(i.platform, i.external_id) for i in islice(read_items(CED, format="ced"), limit)})
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
