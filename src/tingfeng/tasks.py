"""The work queue (Huey): the same tasks embedded on SQLite or scaled out on Redis.

Embedded: a SQLite queue file in the data directory, consumed by threads of the `serve`
process; tasks survive a restart in the file. Scale-out: Redis, consumed by any number of
`tingfeng serve --role worker` processes, with the tasks a dying worker held put back
(tingfeng.queue_recovery). Only the configuration differs.

Tasks are registered on a Huey instance built by `build_queue`, not at import time, so the
settings decide the backend and nothing happens on import.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from huey import Huey, SqliteHuey

from tingfeng.collect.fetcher import Fetcher
from tingfeng.collect.items import ItemError, RawItem
from tingfeng.collect.runner import RunOutcome, record_push, run_source
from tingfeng.db.engine import make_engine
from tingfeng.ingest.ingestor import Ingestor, SourceRef
from tingfeng.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The services of one process, built on first use and shared by its worker threads."""

    settings: Settings
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _engine: Any = None
    _ingestor: Ingestor | None = None
    _fetcher: Fetcher | None = None
    _prepare_helper: Any = None

    @property
    def engine(self) -> Any:
        with self._lock:
            if self._engine is None:
                self._engine = make_engine(self.settings.database_url)
            return self._engine

    @property
    def ingestor(self) -> Ingestor:
        engine = self.engine
        with self._lock:
            if self._ingestor is None:
                self._ingestor = Ingestor(engine, self.settings)
            return self._ingestor

    @property
    def fetcher(self) -> Fetcher:
        with self._lock:
            if self._fetcher is None:
                self._fetcher = Fetcher(self.settings)
            return self._fetcher

    @property
    def prepare_helper(self) -> Any:
        """The helper processes that analyse pushed batches (tingfeng.ingest.helper)."""
        engine = self.engine
        with self._lock:
            if self._prepare_helper is None:
                from tingfeng.ingest.helper import PrepareHelper

                self._prepare_helper = PrepareHelper(self.settings, engine.dialect.name)
            return self._prepare_helper

    def stop_helpers(self) -> None:
        """Stop the helper processes (when the web application shuts down)."""
        if self._prepare_helper is not None:
            self._prepare_helper.close()

    def close(self) -> None:
        self.stop_helpers()
        if self._fetcher is not None:
            self._fetcher.close()
        if self._engine is not None:
            self._engine.dispose()


@dataclass
class Queue:
    """A Huey instance with Tingfeng's tasks registered on it."""

    huey: Huey
    runtime: Runtime
    collect_source: Any = None
    ingest_items: Any = None

    def enqueue_collect(self, source_id: int) -> None:
        self.collect_source(source_id)

    def enqueue_items(
        self,
        source_id: int,
        timezone: str | None,
        items: list[RawItem | ItemError],
        region: str | None = None,
    ) -> None:
        self.ingest_items(source_id, timezone, items, region)


def build_queue(settings: Settings, runtime: Runtime | None = None) -> Queue:
    if settings.queue_url:
        if not settings.queue_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"Unsupported queue URL {settings.queue_url!r}: use redis://HOST:PORT/DB, "
                "or leave it empty for the embedded queue."
            )
        from tingfeng.queue_recovery import ReliableHuey, ReliableRedisStorage

        # Tasks a dying worker held come back (tingfeng.queue_recovery).
        huey: Huey = ReliableHuey(
            "tingfeng",
            storage_class=ReliableRedisStorage,
            url=settings.queue_url,
            results=False,
            alive_ttl_s=settings.worker_alive_s,
        )
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        huey = SqliteHuey("tingfeng", filename=str(settings.queue_file), results=False)
    rt = runtime or Runtime(settings)
    queue = Queue(huey=huey, runtime=rt)

    def collect_source(source_id: int) -> dict[str, Any]:
        outcome: RunOutcome = run_source(rt.engine, rt.ingestor, rt.fetcher, source_id)
        if outcome.ran and not outcome.ok:
            log.warning("source %s failed: %s", source_id, outcome.error)
        return {"ran": outcome.ran, "ok": outcome.ok}

    def ingest_items(
        source_id: int,
        timezone: str | None,
        items: list[RawItem | ItemError],
        region: str | None = None,
    ) -> dict[str, Any]:
        started = datetime.now(UTC)
        stats = rt.ingestor.ingest(SourceRef(source_id, timezone, region), items)
        record_push(rt.engine, source_id, stats, started, datetime.now(UTC))
        return stats.summary()

    # Retries cover a database that is briefly unavailable; the tasks are idempotent.
    queue.collect_source = huey.task(retries=2, retry_delay=10, name="collect_source")(
        collect_source
    )
    queue.ingest_items = huey.task(retries=5, retry_delay=5, name="ingest_items")(ingest_items)
    return queue
