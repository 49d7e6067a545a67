"""The reliable queue on a real Redis: a task held by a worker that dies is run again.

Unit level: a consumer takes a task and dies (its alive key expires); another consumer puts
the task back and takes it. End to end: a worker process killed with SIGKILL in the middle of
an ingest through Redis, with a second worker running: every post is stored, once, without
re-running anything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from tests.servers import PersistentRedisServer
from tingfeng.collect.connectors.imports import read_items
from tingfeng.db.engine import make_engine
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import FetchLog, Post
from tingfeng.ingest.files import import_source
from tingfeng.queue_recovery import ReliableHuey, ReliableRedisStorage
from tingfeng.settings import Settings
from tingfeng.tasks import build_queue

CED = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "rumor" / "ced" / "cascades.jsonl.gz"
)
CLI = [sys.executable, "-m", "tingfeng.cli"]


def _storage(url: str, consumer: str, ttl: int = 3) -> ReliableRedisStorage:
    return ReliableRedisStorage(name="recovery-test", url=url, consumer=consumer, alive_ttl_s=ttl)


def test_a_dead_consumers_task_is_put_back_and_taken_by_another(fresh_redis_url: str) -> None:
    doomed, survivor = _storage(fresh_redis_url, "doomed"), _storage(fresh_redis_url, "survivor")
    for n in (1, 2, 3):
        doomed.enqueue(f"task-{n}".encode())
    doomed.heartbeat()
    survivor.heartbeat()
    assert doomed.dequeue() == b"task-1"
    assert doomed.in_hand() == 1 and doomed.queue_size() == 2
    # Alive: nothing is taken from it.
    assert survivor.recover() == 0
    # Dead: its alive key runs out (it beats no more), and its task goes back first in line.
    redis.Redis.from_url(fresh_redis_url).delete(doomed._alive("doomed"))
    assert survivor.recover() == 1
    assert doomed.held_anywhere() == 0
    taken = [survivor.dequeue() for _ in range(3)]
    assert taken[0] == b"task-1" and sorted(taken) == [b"task-1", b"task-2", b"task-3"]
    # Acknowledged tasks are gone for good; nothing is recovered twice.
    survivor.ack()
    assert survivor.in_hand() == 2  # two still in hand (not acknowledged in this thread)
    assert survivor.recover() == 0


def test_acknowledged_tasks_are_not_run_again(fresh_redis_url: str) -> None:
    first, other = _storage(fresh_redis_url, "first"), _storage(fresh_redis_url, "other")
    first.enqueue(b"only")
    first.heartbeat()
    assert first.dequeue() == b"only"
    first.ack()
    redis.Redis.from_url(fresh_redis_url).delete(first._alive("first"))
    assert other.recover() == 0
    assert other.queue_size() == 0


def _once_redis_answers(take: Any, timeout_s: float = 30) -> Any:
    """`take()` again until the restarted Redis answers (its first calls fail to connect)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return take()
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "Redis did not come back"
            time.sleep(0.2)


def test_a_task_whose_run_outlives_redis_is_run_again_not_set_aside() -> None:
    """Redis is killed (kill -9) while a task runs. Huey cannot record the task's outcome, so
    the task goes back to the queue once Redis is back, before anything new is taken. (It once
    went to the list of unreadable tasks: the connection error was taken for a bad task.)"""
    with PersistentRedisServer() as server:
        huey = ReliableHuey(
            "away-test", storage_class=ReliableRedisStorage, url=server.url, results=False
        )
        storage = huey.storage
        runs: list[int] = []

        @huey.task()
        def work(n: int) -> None:
            runs.append(n)
            if n == 1 and runs.count(1) == 1:
                server.kill()

        work(1)
        work(2)
        with pytest.raises(redis.ConnectionError):  # Redis dies under the task
            huey.execute(huey.dequeue())
        with pytest.raises(redis.ConnectionError):
            huey.dequeue()  # nothing is taken, and nothing is set aside, while Redis is away
        server.start()
        task = _once_redis_answers(huey.dequeue)
        huey.execute(task)
        huey.execute(huey.dequeue())
        assert runs == [1, 1, 2]
        assert storage.set_aside_count() == 0
        assert storage.in_hand() == 0 and storage.queue_size() == 0


def test_an_acknowledgement_redis_missed_is_delivered_before_the_next_task() -> None:
    with PersistentRedisServer() as server:
        storage = ReliableRedisStorage(name="ack-test", url=server.url, consumer="one")
        storage.enqueue(b"first")
        storage.enqueue(b"second")
        assert storage.dequeue() == b"first"
        server.kill()
        storage.ack()  # Redis is away: the acknowledgement waits, without an error
        server.start()
        taken = _once_redis_answers(storage.dequeue)
        assert taken == b"second"
        assert storage.in_hand() == 1  # "first" acknowledged, "second" in hand
        assert storage.set_aside_count() == 0


def test_due_retries_move_to_the_queue_inside_redis(fresh_redis_url: str) -> None:
    from datetime import datetime, timedelta

    storage = _storage(fresh_redis_url, "scheduler")
    now = datetime.now()
    storage.add_to_schedule(b"due", now - timedelta(seconds=1))
    storage.add_to_schedule(b"later", now + timedelta(hours=1))
    # The consumer gets nothing to queue by itself: the due task is in the queue already.
    assert storage.read_schedule(now) == []
    assert storage.queue_size() == 1 and storage.schedule_size() == 1
    assert storage.dequeue() == b"due"


@pytest.mark.slow
def test_worker_killed_mid_ingest_loses_no_batch(
    fresh_postgres_db: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    engine = make_engine(fresh_postgres_db)
    upgrade(engine)
    settings = Settings(
        database_url=fresh_postgres_db,
        queue_url=fresh_redis_url,
        data_dir=tmp_path / "data",
        worker_alive_s=3,
    )
    source = import_source(engine, settings, "import:ced", {"path": str(CED), "format": "ced"})
    env = os.environ | {
        "TINGFENG_CONFIG": "/nonexistent.toml",
        "TINGFENG_LOG_LEVEL": "WARNING",
        "TINGFENG_WORKER_ALIVE_S": "3",
    }
    worker = [*CLI, "--db", fresh_postgres_db, "--queue", fresh_redis_url, "serve", "--role"]
    worker += ["worker", "--workers", "1"]
    victim = subprocess.Popen(worker, env=env, stderr=subprocess.DEVNULL)
    survivor = None
    queue = build_queue(settings)
    items = list(islice(read_items(CED, format="ced"), 2000))
    expected = len({(i.platform, i.external_id) for i in items})
    try:
        for start in range(0, len(items), 100):
            queue.enqueue_items(source.id, source.timezone, items[start : start + 100])
        storage = queue.huey.storage
        assert isinstance(storage, ReliableRedisStorage)
        # Kill the only worker while it holds a batch, with work still queued: frozen first
        # (SIGSTOP), so that it cannot finish the batch between the look and the kill.
        deadline = time.monotonic() + 240
        while True:
            assert time.monotonic() < deadline, "the worker never took a batch"
            if _batches_done(engine):
                os.kill(victim.pid, signal.SIGSTOP)
                if storage.held_anywhere() == 1:
                    break
                os.kill(victim.pid, signal.SIGCONT)
            time.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        assert storage.held_anywhere() == 1, "the killed worker's batch waits in its hand"
        survivor = subprocess.Popen(worker, env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while True:
            with engine.connect() as conn:
                stored = conn.execute(select(func.count(Post.id))).scalar_one()
            if stored >= expected and storage.held_anywhere() == 0:
                break
            assert time.monotonic() < deadline, f"{stored} of {expected} posts stored"
            assert survivor.poll() is None, "the second worker died"
            time.sleep(0.2)
        assert queue.huey.pending_count() == 0
        with engine.connect() as conn:
            distinct = conn.execute(
                select(func.count()).select_from(
                    select(Post.platform, Post.external_id).distinct().subquery()
                )
            ).scalar_one()
        assert stored == distinct == expected  # every post, once
    finally:
        for proc in (victim, survivor):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        engine.dispose()


def _batches_done(engine) -> bool:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(select(func.count(FetchLog.id))).scalar_one() >= 1
