"""When each source is fetched next: interval with jitter, hot mode, backoff, catch-up.

The scheduler only decides and enqueues; the fetch itself runs as a queue task
(`tingfeng.tasks`). State lives in the database (`sources.next_fetch_at`, `lease_until`), so
any number of scheduler restarts or worker processes agree on what is due.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, and_, or_, select, update

from tingfeng.db.engine import write_transaction
from tingfeng.db.models import Source

log = logging.getLogger(__name__)

# Sources that are not polled: their items arrive by push, by hand, or by `tingfeng ingest`
# (re-reading a whole file every interval would only find what is already stored).
PASSIVE_KINDS = frozenset({"push", "lead", "import"})

MAX_BACKOFF_S = 6 * 3600
# At most this many sources are started per tick, so a restart after downtime, when every
# source is overdue, spreads the catch-up instead of firing everything at once.
MAX_DUE_PER_TICK = 20


def current_interval(source: Source, now: datetime) -> int:
    """The source's interval, or its hot interval while hot mode lasts."""
    if source.hot_until is not None and source.hot_until > now:
        return max(1, min(source.hot_interval_s, source.interval_s))
    return max(1, source.interval_s)


def jitter(seconds: float, rng: random.Random | None = None) -> float:
    """±10% so sources added together do not stay in lock-step forever."""
    r = rng or random
    return seconds * (0.9 + 0.2 * r.random())


def next_run(
    source: Source,
    now: datetime,
    *,
    ok: bool,
    permanent: bool = False,
    rng: random.Random | None = None,
) -> datetime:
    """When to fetch again after a run that succeeded (`ok`) or failed."""
    interval = current_interval(source, now)
    if ok:
        return now + timedelta(seconds=jitter(interval, rng))
    failures = max(1, source.consecutive_failures)
    # A permanent error (404, blocked address, bad selector) will not fix itself soon.
    base = interval * (4 if permanent else 1)
    delay = min(MAX_BACKOFF_S, base * 2 ** min(failures - 1, 10))
    return now + timedelta(seconds=jitter(max(delay, interval), rng))


def _after_the_clock_went_back(conn: Connection, now: datetime) -> None:
    """Bring back within reach the times that only a clock that was ahead can have set.

    No schedule puts a source's next run further ahead than its interval or the longest
    backoff, nor a lease further than a run's lease. Further than that, the clock was ahead
    and has been put right: without this, the source would wait as long as the clock was off.
    """
    from tingfeng.collect.runner import LEASE  # (runner imports this module)

    longest_lease = LEASE + timedelta(minutes=1)
    ahead = conn.execute(
        select(Source.id, Source.interval_s, Source.next_fetch_at).where(
            Source.next_fetch_at > now + timedelta(seconds=MAX_BACKOFF_S * 1.1 + 60)
        )
    ).all()
    for sid, interval, at in ahead:
        if at > now + timedelta(seconds=max(MAX_BACKOFF_S, interval) * 1.1 + 60):
            conn.execute(update(Source).where(Source.id == sid).values(next_fetch_at=now))
    # A lease is shortened, not dropped: a run may still hold the source.
    conn.execute(
        update(Source)
        .where(Source.lease_until > now + longest_lease)
        .values(lease_until=now + longest_lease)
    )


def claim_due(engine: Engine, now: datetime, limit: int = MAX_DUE_PER_TICK) -> list[int]:
    """Source ids due now; their next time is pushed ahead so a second tick does not re-pick them.

    The real next time is set by the run itself; the provisional one covers a run that never
    starts (a worker that dies), after which the source is simply due again.
    """
    with write_transaction(engine) as conn:
        _after_the_clock_went_back(conn, now)
        rows = conn.execute(
            select(Source.id, Source.interval_s)
            .where(
                Source.enabled.is_(True),
                Source.kind.not_in(PASSIVE_KINDS),
                or_(Source.next_fetch_at.is_(None), Source.next_fetch_at <= now),
                or_(Source.lease_until.is_(None), Source.lease_until < now),
            )
            .order_by(Source.next_fetch_at)
            .limit(limit)
        ).all()
        for sid, interval in rows:
            conn.execute(
                update(Source)
                .where(and_(Source.id == sid))
                .values(next_fetch_at=now + timedelta(seconds=max(60, interval)))
            )
    return [sid for sid, _ in rows]


class SchedulerLoop:
    """Every tick, enqueue a fetch for each due source. Runs in a thread or its own process."""

    def __init__(
        self,
        engine: Engine,
        enqueue: Callable[[int], None],
        *,
        tick_s: float,
        now: Callable[[], datetime],
    ) -> None:
        self.engine = engine
        self.enqueue = enqueue
        self.tick_s = tick_s
        self.now = now
        self._stop = threading.Event()

    def tick(self) -> list[int]:
        due = claim_due(self.engine, self.now())
        for sid in due:
            self.enqueue(sid)
        return due

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the loop must outlive a database hiccup
                log.exception("scheduler tick failed; retrying")
            self._stop.wait(self.tick_s)

    def stop(self) -> None:
        self._stop.set()
