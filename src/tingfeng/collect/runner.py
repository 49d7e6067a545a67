"""One run of one source: lease it, collect, ingest, record the outcome and the next time.

The lease (`sources.lease_until`) makes sure a source is fetched by one worker at a time,
whatever the number of workers. The connector's cursor is saved only after its items are
stored, so a crash repeats a run instead of skipping items; the store ignores repeats.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, or_, select, update

from tingfeng.collect.connectors.base import CollectContext, get_connector
from tingfeng.collect.errors import CollectError
from tingfeng.collect.fetcher import Fetcher
from tingfeng.collect.items import ItemError, RawItem
from tingfeng.collect.scheduler import next_run
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import FetchLog, Post, Source
from tingfeng.ingest.identity import canonical_url, digest
from tingfeng.ingest.ingestor import Ingestor, IngestStats, SourceRef

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=15)
# Weight of the newest gap in the running mean of gaps between productive runs.
GAP_WEIGHT = 0.2


@dataclass
class RunOutcome:
    source_id: int
    ran: bool  # False when another worker holds the source
    ok: bool = False
    stats: IngestStats | None = None
    error: str | None = None


def _acquire(engine: Engine, source_id: int, now: datetime) -> Source | None:
    with write_transaction(engine) as conn:
        claimed = conn.execute(
            update(Source)
            .where(
                Source.id == source_id, or_(Source.lease_until.is_(None), Source.lease_until < now)
            )
            .values(lease_until=now + LEASE, last_attempt_at=now)
        ).rowcount
        if not claimed:
            return None
        from sqlalchemy.orm import Session

        with Session(bind=conn) as session:
            source = session.get(Source, source_id)
            if source is not None:
                session.expunge(source)
            return source


def known_checker(engine: Engine, source_id: int) -> Callable[[str], bool]:
    """`ctx.is_known`: is an item with this URL or external id already stored?"""

    def is_known(ref: str) -> bool:
        uids = [digest(f"s:{source_id}:{ref}")]
        canon = canonical_url(ref)
        if canon:
            uids.append(digest(f"u:{canon}"))
        with engine.connect() as conn:
            return (
                conn.execute(select(Post.id).where(Post.uid.in_(uids)).limit(1)).first() is not None
            )

    return is_known


def run_source(
    engine: Engine,
    ingestor: Ingestor,
    fetcher: Fetcher | None,
    source_id: int,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    limit: int | None = None,
) -> RunOutcome:
    """Fetch one source once and store what it yields."""
    started = now()
    source = _acquire(engine, source_id, started)
    if source is None:
        return RunOutcome(source_id, ran=False)
    state: dict[str, Any] = dict(source.state or {})
    stats = IngestStats()
    error: CollectError | None = None
    t0 = time.perf_counter()
    try:
        connector = get_connector(source.kind, source.config or {})
        ctx = CollectContext(
            fetcher=fetcher,
            state=state,
            now=now,
            is_known=known_checker(engine, source.id),
            limit=limit,
            source_name=source.name,
        )
        items: Iterator[RawItem | ItemError] = connector.collect(ctx)
        stats = ingestor.ingest(SourceRef(source.id, source.timezone, source.region), items)
    except CollectError as exc:
        error = exc
    except Exception as exc:  # a connector bug must be recorded, not kill the worker
        log.exception("source %s (%s) failed", source.id, source.name)
        error = CollectError(f"Unexpected error while collecting: {exc.__class__.__name__}: {exc}")
    stats.seconds = time.perf_counter() - t0
    _finish(engine, source, state, stats, error, started, now())
    return RunOutcome(
        source_id, ran=True, ok=error is None, stats=stats, error=error.message if error else None
    )


def _finish(
    engine: Engine,
    source: Source,
    state: dict[str, Any],
    stats: IngestStats,
    error: CollectError | None,
    started: datetime,
    finished: datetime,
) -> None:
    values: dict[str, Any] = {"lease_until": None}
    if error is None:
        values.update(
            state=state,
            last_success_at=finished,
            last_error=None,
            consecutive_failures=0,
        )
        if stats.stored and source.last_item_at is not None:
            gap = (finished - source.last_item_at).total_seconds()
            if gap > 0:
                old = source.typical_gap_s
                values["typical_gap_s"] = (
                    gap if old is None else (1 - GAP_WEIGHT) * old + GAP_WEIGHT * gap
                )
        source.consecutive_failures = 0
        values["next_fetch_at"] = next_run(source, finished, ok=True)
    else:
        source.consecutive_failures = (source.consecutive_failures or 0) + 1
        values.update(last_error=error.message, consecutive_failures=source.consecutive_failures)
        values["next_fetch_at"] = next_run(source, finished, ok=False, permanent=error.permanent)
        # The cursor is not saved: the next run re-reads from the last good position and the
        # store skips what it already holds, so nothing between is lost.
    with write_transaction(engine) as conn:
        conn.execute(update(Source).where(Source.id == source.id).values(**values))
        conn.execute(
            FetchLog.__table__.insert().values(
                source_id=source.id,
                started_at=started,
                finished_at=finished,
                ok=error is None,
                items_read=stats.read,
                items_stored=stats.stored,
                duplicates=stats.duplicates,
                worker=f"{socket.gethostname()}:{os.getpid()}",
                error=error.message
                if error
                else (
                    f"{stats.errors} items could not be read, e.g. {stats.error_samples[0]}"
                    if stats.errors
                    else None
                ),
            )
        )


def record_push(
    engine: Engine, source_id: int, stats: IngestStats, started: datetime, finished: datetime
) -> None:
    """A push request is a run too: it shows in the fetch log and the source's health."""
    with write_transaction(engine) as conn:
        conn.execute(
            update(Source)
            .where(Source.id == source_id)
            .values(
                last_attempt_at=finished,
                last_success_at=finished,
                last_error=None,
                consecutive_failures=0,
            )
        )
        conn.execute(
            FetchLog.__table__.insert().values(
                source_id=source_id,
                started_at=started,
                finished_at=finished,
                ok=True,
                items_read=stats.read,
                items_stored=stats.stored,
                duplicates=stats.duplicates,
                error=f"{stats.errors} items rejected" if stats.errors else None,
                worker=f"{socket.gethostname()}:{os.getpid()}",
            )
        )
