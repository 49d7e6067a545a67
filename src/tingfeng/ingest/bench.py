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
