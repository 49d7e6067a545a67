"""`tingfeng bench ingest`: the end-to-end ingest of a file, timed per stage."""

from __future__ import annotations

import resource
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import Engine

from tingfeng.ingest.files import ingest_file
from tingfeng.settings import Settings


class PeakRss:
    """Samples this process's resident memory every 50 ms; `peak_mb` after `stop()`."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 1024 / 1024, 1)


def run_ingest_bench(
    settings: Settings, engine: Engine, path: Path, *, limit: int | None = None
) -> dict[str, Any]:
    with PeakRss() as rss:
        t0 = time.perf_counter()
        stats = ingest_file(settings, engine, path, limit=limit, source_name=f"bench:{path.name}")
        seconds = time.perf_counter() - t0
    posts = stats.read
    return {
        "posts": posts,
        "stored": stats.stored,
        "duplicates": stats.duplicates,
        "errors": stats.errors,
        "grouped": stats.grouped,
        "seconds": round(seconds, 3),
        "posts_per_s": round(posts / seconds, 1) if seconds else 0.0,
        "peak_rss_mb": rss.peak_mb,
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "stages_s": {k: round(v, 3) for k, v in sorted(stats.stages.items())},
    }


def run_worker_bench(
    settings: Settings,
    engine: Engine,
    path: Path,
    *,
    workers: int,
    threads: int = 1,
    limit: int | None = None,
    timeout_s: float = 1800.0,
) -> dict[str, Any]:
    """Scale-out ingest: the file queued on Redis first, then drained by `workers` processes.

    The queue is filled before any worker starts, so what is timed is the workers alone (the
    reading of the file and the workers' start-up are reported apart). Speed is the posts read
    over the span from the first batch started to the last finished, from the fetch log.
    """
    import os
    import signal
    import subprocess
    import sys
    from itertools import islice

    from sqlalchemy import func, select

    from tingfeng.collect.connectors.imports import read_items
    from tingfeng.db.models import FetchLog
    from tingfeng.ingest.files import import_source
    from tingfeng.tasks import build_queue

    if not settings.queue_url:
        raise ValueError("--workers needs a queue: give --queue redis://HOST:PORT/DB")
    queue = build_queue(settings)
    pending = queue.huey.pending_count()
    if pending:
        raise ValueError(
            f"the queue at {settings.queue_url} already holds {pending} tasks: benchmark with an "
            "empty Redis database (another /DB number), or let its workers finish first"
        )
    source = import_source(
        engine, settings, f"bench:{path.name}:{time.time_ns()}", {"path": str(path)}
    )
    t0 = time.perf_counter()
    tasks = read = 0
    items = read_items(path, format="auto", limit=limit)
    while batch := list(islice(items, settings.ingest_batch_size)):
        queue.enqueue_items(source.id, source.timezone, batch, source.region)
        tasks += 1
        read += len(batch)
    enqueue_s = time.perf_counter() - t0
    env = os.environ | {"TINGFENG_LOG_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", "tingfeng.cli", "--db", settings.database_url]
    cmd += ["--queue", settings.queue_url, "serve", "--role", "worker"]
    cmd += ["--workers", str(threads)]
    t1 = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(workers)
    ]
    done_q = select(
        func.count(FetchLog.id),
        func.min(FetchLog.started_at),
        func.max(FetchLog.finished_at),
        func.coalesce(func.sum(FetchLog.items_stored), 0),
        func.coalesce(func.sum(FetchLog.duplicates), 0),
        func.count(func.distinct(FetchLog.worker)),
    ).where(FetchLog.source_id == source.id)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            with engine.connect() as conn:
                done, first, last, stored, dups, ran_on = conn.execute(done_q).one()
            if done >= tasks:
                break
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                err = (
                    dead[0].stderr.read().decode(errors="replace")[-2000:] if dead[0].stderr else ""
                )
                raise RuntimeError(f"a worker exited with {dead[0].returncode}: {err}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {tasks} batches done in {timeout_s:.0f} s")
            time.sleep(0.1)
        wall_s = time.perf_counter() - t1
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    span = (last - first).total_seconds() if first and last else wall_s
    return {
        "backend": engine.dialect.name,
        "queue": "redis",
        "workers": workers,
        "threads_per_worker": threads,
        "posts": read,
        "stored": int(stored),
        "duplicates": int(dups),
        "batches": tasks,
        "workers_used": int(ran_on),
        "enqueue_s": round(enqueue_s, 3),
        "seconds": round(span, 3),
        "wall_seconds": round(wall_s, 3),
        "posts_per_s": round(read / span, 1) if span else 0.0,
    }
