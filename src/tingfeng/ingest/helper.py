"""Analysis of pushed batches in a helper process, so that the web process only stores them.

A push request used to clean, segment and read its posts (about 0.4 ms a post) in the web
process, where the GIL made them wait for each other and for the pages being served: one core
did everything and the other idled. Now a batch of at least `push_helper_min_posts` goes to a
helper process (a `ProcessPoolExecutor` of `prepare_processes` spawned processes, each with its
own models), which returns it analysed, index terms and SQLite values included; the request
then stores it. While the helper analyses one batch, the web process stores the previous one.

Small pushes stay in the web process: for a handful of posts the trip to the helper costs more
than it saves. A helper that dies (killed, out of memory) costs nothing accepted: the batch is
analysed in the web process instead and a new helper is started for the next one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Any

from tingfeng.collect.items import ItemError, RawItem
from tingfeng.heap import settle_heap
from tingfeng.settings import Settings

log = logging.getLogger(__name__)

# The helper process's own state, built once by `_start` (module globals: one per process).
_preparer: Any = None
_watcher: Any = None
_dialect: str | None = None


def helper_preparer(settings: Settings) -> tuple[Any, Any]:
    """The preparer of a helper process (with its models) and the taxonomy watcher that keeps
    its categories current; the same as the storing process builds for itself."""
    from tingfeng.db.engine import make_engine
    from tingfeng.ingest.prepare import Preparer, segmenter_for
    from tingfeng.ingest.readings import TaxonomyWatcher, reader_for
    from tingfeng.privacy import byline_for

    segmenter = segmenter_for(settings)
    preparer = Preparer(segmenter, settings.default_timezone, settings.dedup_min_chars)
    preparer.byline = byline_for(settings)
    watcher = None
    if settings.analyze_on_ingest:
        engine = make_engine(settings.database_url)
        preparer.reader = reader_for(settings, engine, segmenter)
        watcher = TaxonomyWatcher(engine, preparer.reader)
    return preparer, watcher


def exit_with_parent() -> None:
    """End this helper process when the process that started it is gone (kill -9 or a stop
    signal before its handlers were set): it would otherwise wait on its queue for ever,
    holding its memory and the parent's output pipes."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _start(settings: Settings, dialect: str) -> None:
    global _preparer, _watcher, _dialect
    exit_with_parent()
    _preparer, _watcher = helper_preparer(settings)
    _dialect = dialect


def _prepare_in_helper(source: Any, items: list[RawItem | ItemError], now: datetime) -> Any:
    from tingfeng.ingest.ingestor import prepare_batch

    if _watcher is not None:
        _watcher.check()
    return prepare_batch(_preparer, source, items, now, _dialect)


def _ready() -> bool:
    """Load the models (the first reading does), so that no pushed batch waits for them."""
    if _preparer is not None and _preparer.reader is not None:
        _preparer.reader.warm_up()
    settle_heap()
    return _preparer is not None


class PrepareHelper:
    """The helper processes of one web process, started on first use."""

    def __init__(self, settings: Settings, dialect: str) -> None:
        self.settings = settings
        self.dialect = dialect
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def wanted(self, count: int) -> bool:
        """Whether a batch of `count` items is worth sending to the helper."""
        return self.settings.prepare_processes > 0 and count >= self.settings.push_helper_min_posts

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                import multiprocessing

                # spawn, not fork: the web process runs threads (and holds SQLite handles).
                self._pool = ProcessPoolExecutor(
                    max_workers=self.settings.prepare_processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start,
                    initargs=(self.settings, self.dialect),
                )
            return self._pool

    def prepare(self, source: Any, items: list[RawItem | ItemError], now: datetime) -> Any:
        """The batch analysed by a helper process (a `PreparedBatch`), or None when no helper
        could do it (the caller then analyses it itself)."""
        pool = self._get_pool()
        try:
            return pool.submit(_prepare_in_helper, source, items, now).result()
        except BrokenProcessPool:
            log.error(
                "the push analysis helper stopped; this batch is analysed in the web process "
                "and a new helper starts for the next one"
            )
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            return None

    def start(self) -> None:
        """Start the helpers now and load their models, in the background, so that the first
        large push does not wait seconds for them."""
        if self.settings.prepare_processes <= 0:
            return
        pool = self._get_pool()
        for _ in range(self.settings.prepare_processes):
            pool.submit(_ready)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
