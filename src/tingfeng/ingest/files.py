"""`tingfeng ingest FILE`: import a file through the same pipeline as every other source."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from tingfeng.collect.errors import CollectError, ConfigError
from tingfeng.collect.sources import SourceNotFound, add_source, find_source
from tingfeng.db.engine import write_transaction
from tingfeng.ingest.ingestor import Ingestor, IngestStats, SourceRef
from tingfeng.settings import Settings

# Below this size a helper process costs more to start than it saves.
SMALL_FILE_BYTES = 2 * 1024 * 1024


class IngestFailed(Exception):
    """The file stopped being readable part-way; what was stored before stays stored."""

    def __init__(self, message: str, stats: IngestStats) -> None:
        super().__init__(message)
        self.message = message
        self.stats = stats


def import_source(
    engine: Engine, settings: Settings, name: str, config: dict[str, Any]
) -> SourceRef:
    """The import source of this name, created on first use (imports run on demand)."""
    with write_transaction(engine) as conn:
        try:
            source = find_source(conn, name)
        except SourceNotFound:
            source = add_source(
                conn, name=name, kind="import", config=config, timezone=settings.default_timezone
            )
    return SourceRef(source.id, source.timezone, source.region)


def ingest_file(
    settings: Settings,
    engine: Engine,
    path: Path,
    *,
    format: str = "auto",
    limit: int | None = None,
    source_name: str | None = None,
    mapping: dict[str, str] | None = None,
    preset: str | None = None,
    platform: str | None = None,
    ingestor: Ingestor | None = None,
    queue_wait_s: float = 3600.0,
) -> IngestStats:
    from tingfeng.collect.connectors.imports import read_items

    if not path.exists():
        raise ConfigError(f"{path} does not exist: check the path.")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory: give a file.")
    config: dict[str, Any] = {"path": str(path.resolve()), "format": format}
    if mapping:
        config["mapping"] = mapping
    if preset:
        config["preset"] = preset
    if platform:
        config["platform"] = platform
    reader = partial(
        read_items,
        path,
        format=format,
        mapping=mapping,
        preset=preset,
        platform=platform,
        limit=limit,
    )
    items = reader()
    # Reading the first item surfaces a wrong file before a source is created for it.
    first = next(items, None)
    source = import_source(engine, settings, source_name or f"import:{path.name}", config)
    ingestor = ingestor or Ingestor(engine, settings)

    progress = IngestStats()
    started = time.perf_counter()
    try:
        if settings.queue_url:
            head = [first] if first is not None else []
            return _through_queue(settings, engine, source, chain(head, items), wait_s=queue_wait_s)
        if first is None or path.stat().st_size < SMALL_FILE_BYTES:
            head = [first] if first is not None else []
            return ingestor.ingest(source, chain(head, items), on_batch=progress.merge)
        # A helper process reads the file again from the start and analyses it while this one
        # writes; the check above cost one item.
        items.close()
        return ingestor.ingest_from(source, reader, on_batch=progress.merge)
    except CollectError as exc:
        progress.seconds = time.perf_counter() - started
        raise IngestFailed(exc.message, progress) from exc


def _through_queue(
    settings: Settings, engine: Engine, source: SourceRef, items: Any, *, wait_s: float
) -> IngestStats:
    """Scale-out: hand the file to the workers in batches and wait until they are done.

    Each batch is one `ingest_items` task; each task writes one fetch-log row when it finishes,
    which is how completion is counted (the queue itself only knows what is still pending).
    """
    from itertools import islice

    from sqlalchemy import func, select

    from tingfeng.db.models import FetchLog
    from tingfeng.tasks import build_queue

    queue = build_queue(settings)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    tasks = 0
    read = 0
    while batch := list(islice(items, settings.ingest_batch_size)):
        queue.enqueue_items(source.id, source.timezone, batch, source.region)
        tasks += 1
        read += len(batch)
    deadline = time.monotonic() + wait_s
    query = select(
        func.count(FetchLog.id),
        func.coalesce(func.sum(FetchLog.items_stored), 0),
        func.coalesce(func.sum(FetchLog.duplicates), 0),
        func.coalesce(func.sum(FetchLog.items_read), 0),
    ).where(FetchLog.source_id == source.id, FetchLog.started_at >= started)
    while True:
        with engine.connect() as conn:
            done, stored, dups, done_read = conn.execute(query).one()
        if done >= tasks or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    stats = IngestStats(
        read=read,
        stored=int(stored),
        duplicates=int(dups),
        errors=int(done_read) - int(stored) - int(dups),
    )
    stats.seconds = time.perf_counter() - t0
    if done < tasks:
        raise CollectError(
            f"Queued {tasks} batches but only {done} finished within {wait_s:.0f} s: are workers "
            "running (`tingfeng serve --role worker`)? The rest will be stored when they run."
        )
    return stats
