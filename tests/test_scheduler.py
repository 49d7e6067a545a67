"""Scheduling: due sources, jitter, hot mode, backoff, catch-up without a burst."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from tingfeng.collect.scheduler import (
    MAX_DUE_PER_TICK,
    SchedulerLoop,
    claim_due,
    current_interval,
    next_run,
)
from tingfeng.collect.sources import add_source
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import Source

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _source(**kw) -> Source:  # type: ignore[no-untyped-def]
    base = {"interval_s": 600, "hot_interval_s": 60, "hot_until": None, "consecutive_failures": 0}
    return Source(**(base | kw))


def test_interval_with_jitter_stays_within_ten_percent() -> None:
    rng = random.Random(1)
    times = [next_run(_source(), NOW, ok=True, rng=rng) for _ in range(200)]
    gaps = [(t - NOW).total_seconds() for t in times]
    assert min(gaps) >= 540 and max(gaps) <= 660 and len(set(gaps)) > 100


def test_hot_mode_uses_the_hot_interval_until_it_ends() -> None:
    hot = _source(hot_until=NOW + timedelta(minutes=30))
    assert current_interval(hot, NOW) == 60
    assert current_interval(hot, NOW + timedelta(minutes=31)) == 600


def test_failures_back_off_exponentially_and_permanent_errors_harder() -> None:
    rng = random.Random(2)
    delays = []
    for failures in (1, 2, 3, 4):
        t = next_run(_source(consecutive_failures=failures), NOW, ok=False, rng=random.Random(2))
        delays.append((t - NOW).total_seconds())
    assert delays[0] < delays[1] < delays[2] < delays[3]
    transient = next_run(_source(consecutive_failures=1), NOW, ok=False, rng=rng)
    permanent = next_run(_source(consecutive_failures=1), NOW, ok=False, permanent=True, rng=rng)
    assert permanent > transient
    capped = next_run(_source(consecutive_failures=50), NOW, ok=False, rng=rng)
    assert (capped - NOW).total_seconds() <= 6 * 3600 * 1.1


def test_catch_up_after_downtime_is_spread_over_ticks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    upgrade(engine)
    with write_transaction(engine) as conn:
        for i in range(MAX_DUE_PER_TICK + 5):
            add_source(
                conn, name=f"feed{i}", kind="feed", config={"url": f"https://example.com/{i}.xml"}
            )
        add_source(conn, name="pushed", kind="push", config={})
        conn.execute(update(Source).values(next_fetch_at=NOW - timedelta(days=2)))
    enqueued: list[int] = []
    loop = SchedulerLoop(engine, enqueued.append, tick_s=1, now=lambda: NOW)
    first = loop.tick()
    assert len(first) == MAX_DUE_PER_TICK
    second = loop.tick()
    assert len(second) == 5 and not set(first) & set(second)
    assert loop.tick() == []  # nothing is picked twice
    assert len(enqueued) == MAX_DUE_PER_TICK + 5  # the push source is never polled
    # A run that never started (a dead worker) leaves the source due again after one interval.
    later = claim_due(engine, NOW + timedelta(minutes=16))
    assert len(later) == MAX_DUE_PER_TICK
