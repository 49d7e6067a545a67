"""Metrics for Prometheus, read from the database at scrape time.

A custom collector rather than counters kept in memory: the web, worker and scheduler processes
all write to the same database, so any web process answers with the same truth, whichever
process ingested, sent or escalated. Each scrape stays cheap on a large installation: the
posts table is never counted (the sources keep running totals), recent activity is read from the
newest rows by primary key or through an index, and the rest are small tables.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, case, func, select
from sqlalchemy.exc import SQLAlchemyError

from tingfeng import __version__
from tingfeng.cases.states import OPEN_STATES
from tingfeng.collect.health import status_of
from tingfeng.db.models import Alert, Case, CaseDeadline, Delivery, FetchLog, Source
from tingfeng.readiness import Readiness
from tingfeng.settings import Settings

SOURCE_STATES = ("healthy", "failing", "stale", "never", "disabled", "passive")
# A source counts as up unless it fails, has gone quiet, or never ran; disabled ones are left out.
UP_STATES = frozenset({"healthy", "passive"})
INGEST_WINDOW = timedelta(minutes=5)
# Fetch-log rows are written when a run finishes, in about that order (a write may wait for
# the lock): reading from the newest back stops this far past the window.
INGEST_SLACK = timedelta(minutes=1)
INGEST_BATCH = 1000
LATENCY_WINDOW = timedelta(hours=1)
# A message is sent soon after its last scheduled attempt (`next_attempt_at`, moved on at each
# retry) unless no sender ran: bounding that gap lets the (status, next_attempt_at) index bound
# the rows read. A message picked up later still, after an outage, is left out; the outage
# itself shows as tingfeng_outbox_oldest_pending_seconds while it lasts.
LATENCY_PICKUP = timedelta(hours=1)
LATENCY_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
OUTBOX_STATES = ("pending", "sending", "failed")


def _ts(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


class TingfengCollector(Collector):
    """Everything Tingfeng knows about its own state, as Prometheus metric families."""

    def __init__(self, engine: Engine, settings: Settings, readiness: Readiness) -> None:
        self.engine = engine
        self.settings = settings
        self.readiness = readiness

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        families = list(self._build_info())
        checks = {c.name: c for c in self.readiness.run()}
        ready = GaugeMetricFamily(
            "tingfeng_ready_check",
            "1 when the readiness check passes (see /readyz for the reason when it does not).",
            labels=["check"],
        )
        for name, check in checks.items():
            ready.add_metric([name], 1.0 if check.ok else 0.0)
        families.append(ready)
        families.extend(self._disk(checks["disk"].detail))
        families.append(
            GaugeMetricFamily(
                "tingfeng_clock_skew_seconds",
                "PostgreSQL: the database server's clock minus this machine's; SQLite: how far "
                "the newest record lies in the future (this clock went back).",
                value=float(checks["clock"].detail.get("skew_s", 0.0)),
            )
        )
        families.extend(self._queue())
        db_up = GaugeMetricFamily("tingfeng_db_up", "1 when the database answers.")
        try:
            with self.engine.connect() as conn:
                now = datetime.now(UTC)
                families.extend(self._posts(conn, now))
                families.extend(self._sources(conn, now))
                families.extend(self._alerts(conn, now))
                families.extend(self._cases(conn, now))
            db_up.add_metric([], 1.0)
        except SQLAlchemyError:
            db_up.add_metric([], 0.0)
        families.append(db_up)
        families.append(
            GaugeMetricFamily(
                "tingfeng_scrape_duration_seconds",
                "Time this process took to gather these metrics.",
                value=time.perf_counter() - started,
            )
        )
        yield from families

    def _build_info(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "tingfeng_build_info",
            "Version and backends of this installation (always 1).",
            labels=["version", "database", "queue"],
        )
        queue = "redis" if self.settings.queue_url else "embedded"
        info.add_metric([__version__, self.engine.dialect.name, queue], 1.0)
        yield info

    def _disk(self, detail: dict[str, Any]) -> Iterator[Metric]:
        free = GaugeMetricFamily(
            "tingfeng_disk_free_bytes",
            "Free space on the disks Tingfeng writes to (data directory, SQLite database).",
            labels=["path"],
        )
        for path, value in detail.get("free_bytes", {}).items():
            free.add_metric([path], float(value))
        yield free
        yield GaugeMetricFamily(
            "tingfeng_disk_free_min_bytes",
            "The free space under which the disk counts as full (disk_free_min_mb).",
            value=float(self.settings.disk_free_min_mb * 1024 * 1024),
        )

    def _queue(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("tingfeng_queue_up", "1 when the work queue answers.")
        try:
            storage = self.readiness.queue_storage()
            pending, scheduled = int(storage.queue_size()), int(storage.schedule_size())
            # The reliable Redis queue (tingfeng.queue_recovery) also knows what workers hold.
            reliable = hasattr(storage, "held_anywhere")
            held = int(storage.held_anywhere()) if reliable else 0
            set_aside = int(storage.set_aside_count()) if reliable else 0
        except Exception:  # Redis or the queue file unreachable: say so, keep the rest
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield GaugeMetricFamily(
            "tingfeng_queue_depth",
            "Tasks waiting in the work queue (fetches and pushed batches not yet taken).",
            value=float(pending),
        )
        yield GaugeMetricFamily(
            "tingfeng_queue_scheduled",
            "Tasks waiting for a later time in the queue (retries after an error).",
            value=float(scheduled),
        )
        if reliable:
            yield GaugeMetricFamily(
                "tingfeng_queue_in_hand",
                "Tasks taken by a worker and not yet finished (a dead worker's come back).",
                value=float(held),
            )
            yield GaugeMetricFamily(
                "tingfeng_queue_set_aside",
                "Tasks that could not be read, kept apart from the queue (should stay 0).",
                value=float(set_aside),
            )

    def _posts(self, conn: Connection, now: datetime) -> Iterator[Metric]:
        # The sources' running totals are bumped in the transaction that stores the posts.
        total = conn.execute(select(func.coalesce(func.sum(Source.items_total), 0))).scalar_one()
        yield CounterMetricFamily(
            "tingfeng_posts_stored",
            "Posts stored since the start, every way in (use rate() for the ingest rate).",
            value=float(total),
        )
        stored = _stored_since(conn, now - INGEST_WINDOW)
        yield GaugeMetricFamily(
            "tingfeng_posts_ingested_per_second",
            "Posts stored per second over the last 5 minutes by source runs and pushes.",
            value=float(stored) / INGEST_WINDOW.total_seconds(),
        )

    def _sources(self, conn: Connection, now: datetime) -> Iterator[Metric]:
        # Rows, not ORM objects: status_of reads only plain columns, and a scrape should not
        # build hundreds of objects a minute.
        columns = ("id", "name", "kind", "enabled", "last_attempt_at", "last_success_at",
                   "last_item_at", "consecutive_failures", "typical_gap_s", "items_total")  # fmt: skip
        table = Source.__table__.c
        sources = conn.execute(select(*(table[c] for c in columns)).order_by(Source.id)).all()
        state_of = {s.id: status_of(s, now) for s in sources}  # type: ignore[arg-type]
        states = Counter(state_of.values())
        health = GaugeMetricFamily(
            "tingfeng_source_health", "Sources in each health state.", labels=["state"]
        )
        for state in SOURCE_STATES:
            health.add_metric([state], float(states.get(state, 0)))
        yield health
        labels = ["source_id", "source", "kind"]
        up = GaugeMetricFamily(
            "tingfeng_source_up",
            "1 when an enabled source is healthy (or receives pushes); 0 when it fails, has "
            "gone quiet or has never run.",
            labels=labels,
        )
        failures = GaugeMetricFamily(
            "tingfeng_source_consecutive_failures",
            "Failed runs in a row of each enabled source.",
            labels=labels,
        )
        last_ok = GaugeMetricFamily(
            "tingfeng_source_last_success_timestamp_seconds",
            "When each enabled source last ran without error (Unix time; 0: never).",
            labels=labels,
        )
        stored = CounterMetricFamily(
            "tingfeng_source_posts_stored", "Posts stored from each source.", labels=labels
        )
        for s in sources:
            state = state_of[s.id]
            if state == "disabled":
                continue
            key = [str(s.id), s.name, s.kind]
            up.add_metric(key, 1.0 if state in UP_STATES else 0.0)
            failures.add_metric(key, float(s.consecutive_failures))
            last_ok.add_metric(key, _ts(s.last_success_at))
            stored.add_metric(key, float(s.items_total))
        yield from (up, failures, last_ok, stored)

    def _alerts(self, conn: Connection, now: datetime) -> Iterator[Metric]:
        open_alerts = GaugeMetricFamily(
            "tingfeng_alerts_open",
            "Alerts not yet acknowledged, by level.",
            labels=["level"],
        )
        for level, count in conn.execute(
            select(Alert.level, func.count()).where(Alert.status == "open").group_by(Alert.level)
        ):
            open_alerts.add_metric([level], float(count))
        yield open_alerts
        # Messages on channels only: in-app ones are delivered by being written.
        on_channel = Delivery.channel_id.is_not(None)
        counts = dict(
            conn.execute(
                select(Delivery.status, func.count())
                .where(Delivery.status.in_(OUTBOX_STATES), on_channel)
                .group_by(Delivery.status)
            ).all()
        )
        outbox = GaugeMetricFamily(
            "tingfeng_outbox_messages",
            "Alert messages on channels waiting to be sent (pending), being sent, or given up "
            "(failed: shown on the alerts page, where they can be retried).",
            labels=["status"],
        )
        for status in OUTBOX_STATES:
            outbox.add_metric([status], float(counts.get(status, 0)))
        yield outbox
        oldest = conn.execute(
            select(func.min(Delivery.created_at)).where(
                Delivery.status.in_(("pending", "sending")), on_channel
            )
        ).scalar()
        yield GaugeMetricFamily(
            "tingfeng_outbox_oldest_pending_seconds",
            "Age of the oldest alert message not yet sent (0: none waiting).",
            value=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        )
        since = now - LATENCY_WINDOW
        latencies = [
            (sent - created).total_seconds()
            for created, sent in conn.execute(
                select(Delivery.created_at, Delivery.sent_at).where(
                    Delivery.status == "sent",
                    Delivery.next_attempt_at >= since - LATENCY_PICKUP,
                    on_channel,
                    Delivery.sent_at >= since,
                )
            )
            if sent is not None and created is not None
        ]
        buckets = [
            (str(bound), float(sum(1 for x in latencies if x <= bound)))
            for bound in LATENCY_BUCKETS
        ]
        buckets.append(("+Inf", float(len(latencies))))
        yield GaugeHistogramMetricFamily(
            "tingfeng_alert_delivery_seconds",
            "From an alert message's creation to its sending, for messages sent on channels "
            "in the last hour.",
            buckets=buckets,
            gsum_value=float(sum(latencies)),
        )

    def _cases(self, conn: Connection, now: datetime) -> Iterator[Metric]:
        open_cases = GaugeMetricFamily(
            "tingfeng_cases_open", "Cases still in hand, by state.", labels=["state"]
        )
        for state, count in conn.execute(
            select(Case.state, func.count())
            .where(Case.state.in_(sorted(OPEN_STATES)))
            .group_by(Case.state)
        ):
            open_cases.add_metric([state], float(count))
        yield open_cases
        overdue = conn.execute(
            select(func.count(func.distinct(CaseDeadline.case_id)))
            .join(Case, Case.id == CaseDeadline.case_id)
            .where(
                CaseDeadline.status == "open",
                CaseDeadline.due_at < now,
                Case.state.in_(sorted(OPEN_STATES)),
            )
        ).scalar_one()
        yield GaugeMetricFamily(
            "tingfeng_cases_overdue",
            "Cases in hand with a deadline (受理, 报告, 反馈, 回复…) already past.",
            value=float(overdue),
        )


def _stored_since(conn: Connection, since: datetime) -> int:
    """Posts stored by runs and pushes that finished since then, reading the fetch log from its
    newest row back by primary key, a batch at a time (no index on the time; the log grows
    without end), and summing in the database."""
    total, before = 0, None
    while True:
        q = select(FetchLog.id, FetchLog.items_stored, FetchLog.finished_at)
        if before is not None:
            q = q.where(FetchLog.id < before)
        batch = q.order_by(FetchLog.id.desc()).limit(INGEST_BATCH).subquery()
        in_window = case((batch.c.finished_at >= since, batch.c.items_stored), else_=0)
        stored, rows, oldest, first_id = conn.execute(
            select(
                func.coalesce(func.sum(in_window), 0),
                func.count(),
                func.min(batch.c.finished_at),
                func.min(batch.c.id),
            )
        ).one()
        total += int(stored)
        if rows < INGEST_BATCH or (oldest is not None and oldest < since - INGEST_SLACK):
            return total
        before = first_id


def build_registry(engine: Engine, settings: Settings, readiness: Readiness) -> CollectorRegistry:
    """A registry of this application: Tingfeng's own metrics and this process's (memory, CPU,
    open files, Python's garbage collector)."""
    from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

    registry = CollectorRegistry(auto_describe=False)
    registry.register(TingfengCollector(engine, settings, readiness))
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry
