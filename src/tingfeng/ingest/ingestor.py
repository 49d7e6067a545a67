"""The ingest pipeline: prepare → key check → duplicate groups → store → index, per batch.

Each batch is one transaction, so a crash loses at most the batch in flight, and re-running
it stores nothing twice (the unique uid). Timing of each stage is kept for the benchmark.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from queue import Empty
from typing import Any

from sqlalchemy import Engine, select

from tingfeng.analyze.duplicates import NearDuplicateIndex
from tingfeng.analyze.segment import Segmenter
from tingfeng.collect.errors import CollectError
from tingfeng.collect.items import ItemError, RawItem
from tingfeng.db import posts as store
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import Post
from tingfeng.ingest.prepare import Draft, ItemRejected, Preparer, segmenter_for
from tingfeng.ingest.readings import TaxonomyWatcher, reader_for, sqlite_encoded, store_readings
from tingfeng.privacy import byline_for
from tingfeng.search.index import add_to_index, index_terms, sort_key
from tingfeng.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    errors: int = 0
    grouped: int = 0  # stored posts that joined an existing duplicate group
    matched: int = 0  # stored posts that matched at least one topic
    grouped_into_events: int = 0  # stored posts that joined or started an event
    alerts: int = 0  # alerts raised (not counting matches folded into an open alert)
    deliveries: int = 0  # messages written to the outbox and in-app lists
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    def add_stage(self, name: str, seconds: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + seconds

    def add_error(self, where: str, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{where}: {message}")

    def merge(self, other: IngestStats) -> None:
        self.read += other.read
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.errors += other.errors
        self.grouped += other.grouped
        self.matched += other.matched
        self.grouped_into_events += other.grouped_into_events
        self.alerts += other.alerts
        self.deliveries += other.deliveries
        for name, secs in other.stages.items():
            self.add_stage(name, secs)
        self.error_samples.extend(other.error_samples[: 20 - len(self.error_samples)])

    def summary(self) -> dict[str, object]:
        return {
            "read": self.read,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
        }


@dataclass(slots=True)
class PreparedBatch:
    """A batch analysed and ready to store (drafts unique by uid, in arrival order)."""

    read: int
    drafts: dict[str, Draft]
    errors: list[tuple[str, str]]
    repeats: int  # items repeated within the batch
    seconds: float
    read_seconds: float = 0.0


@dataclass(frozen=True)
class SourceRef:
    """What ingest needs to know of a source."""

    id: int
    timezone: str | None = None
    region: str | None = None  # the source's configured region, for posts that name none


def prepare_batch(
    preparer: Preparer,
    source: SourceRef,
    batch: list[RawItem | ItemError],
    now: datetime,
    dialect: str | None = None,
) -> PreparedBatch:
    """Analyse a batch; bad items become errors, never exceptions.

    With `dialect`, the full-text index terms are computed here too, so that a helper process
    does that work rather than the one that writes.
    """
    t0 = time.perf_counter()
    drafts: dict[str, Draft] = {}
    errors: list[tuple[str, str]] = []
    repeats = 0
    for n, item in enumerate(batch):
        if isinstance(item, ItemError):
            errors.append((item.where, item.message))
            continue
        where = item.external_id or item.url or f"item {n + 1}"
        try:
            draft = preparer.prepare(item, source.id, source.timezone, now)
        except ItemRejected as exc:
            errors.append((where, str(exc)))
            continue
        except Exception as exc:  # one odd item must not sink the batch
            log.exception("could not prepare an item of source %s", source.id)
            errors.append((where, f"could not analyse: {exc}"))
            continue
        uid = draft.row["uid"]
        if uid in drafts:
            repeats += 1
        else:
            if dialect is not None:
                draft.index = index_terms(dialect, draft.row["title_norm"], draft.row["text_norm"])
                if dialect == "sqlite":
                    draft.values = store.sqlite_values(draft.row)
            drafts[uid] = draft
    if preparer.reader is not None and drafts:
        _read(preparer, source, list(drafts.values()), encode=dialect == "sqlite")
    return PreparedBatch(len(batch), drafts, errors, repeats, time.perf_counter() - t0)


def _read(preparer: Preparer, source: SourceRef, drafts: list[Draft], encode: bool = False) -> None:
    """Readings of a batch (one call: the models work on the whole batch at once)."""
    assert preparer.reader is not None
    rows = [d.row for d in drafts]
    texts = [
        f"{r['title_norm']} {r['text_norm']}" if r["title_norm"] else r["text_norm"] for r in rows
    ]
    readings = preparer.reader.read_batch(
        texts, [r["lang"] for r in rows], [source.region] * len(rows)
    )
    for draft, reading in zip(drafts, readings, strict=True):
        if encode and reading.encoded is None:
            reading.encoded = sqlite_encoded(reading)
        draft.reading = reading


def _produce(
    settings: Settings,
    source: SourceRef,
    reader: Callable[[], Iterable[RawItem | ItemError]],
    dialect: str,
    queue: Any,
) -> None:
    """The helper process: read and analyse batches, hand them to the writer in order."""
    from tingfeng.ingest.helper import exit_with_parent, helper_preparer

    exit_with_parent()
    preparer, watcher = helper_preparer(settings)
    try:
        iterator = iter(reader())
        while True:
            t0 = time.perf_counter()
            batch = list(islice(iterator, settings.ingest_batch_size))
            read_s = time.perf_counter() - t0
            if not batch:
                break
            if watcher is not None:
                watcher.check()
            prepared = prepare_batch(preparer, source, batch, datetime.now(UTC), dialect)
            prepared.read_seconds = read_s
            queue.put(("batch", prepared))
        queue.put(("done", None))
    except CollectError as exc:
        queue.put(("error", (exc.message, exc.permanent)))
    except Exception as exc:  # reported to the writer, which tells the user
        log.exception("reading failed")
        queue.put(("error", (f"Reading stopped: {exc.__class__.__name__}: {exc}", False)))


class Ingestor:
    """Stores items for sources; one per process (it holds the near-duplicate memory)."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        segmenter: Segmenter | None = None,
        near_duplicates: NearDuplicateIndex | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.now = now
        segmenter = segmenter or segmenter_for(settings)
        self.preparer = Preparer(segmenter, settings.default_timezone, settings.dedup_min_chars)
        self.preparer.byline = byline_for(settings)
        self.watcher: TaxonomyWatcher | None = None
        if settings.analyze_on_ingest:
            self.preparer.reader = reader_for(settings, engine, segmenter)
            self.watcher = TaxonomyWatcher(engine, self.preparer.reader)
        self.near = near_duplicates or NearDuplicateIndex(
            threshold=settings.dedup_threshold,
            num_perm=settings.dedup_num_perm,
            window=settings.dedup_window_posts,
            min_chars=settings.dedup_min_chars,
            prestripped=True,  # prepare() has stripped the texts already
        )
        self._warmed = near_duplicates is not None
        # The newest post id the near-duplicate memory has seen, ours or another process's.
        self._seen_post = 0
        # Topic matching and event grouping (tingfeng.topics, tingfeng.events), created lazily so
        # that a process with no topics pays nothing for them.
        self.topic_stage: Any = None
        self.event_stage: Any = None
        self.alert_stage: Any = None
        self._on_level: Any = None
        if settings.match_topics_on_ingest:
            from tingfeng.topics.stream import TopicStage

            self.topic_stage = TopicStage(engine)
        # Worker threads share one Ingestor; batches are stored one at a time so that duplicate
        # groups see each other's posts (and on SQLite only one writer runs at a time anyway).
        self._lock = threading.Lock()
        self._refreshed = 0.0

    def ready(self) -> None:
        """Load now what the first batch would: the near-duplicate memory and the models."""
        with self._lock:
            if not self._warmed:
                self.warm()
        if self.preparer.reader is not None:
            self.preparer.reader.warm_up()

    def warm(self, limit: int | None = None) -> int:
        """Reload recent posts into the near-duplicate memory after a restart."""
        self._warmed = True
        limit = limit or self.settings.dedup_window_posts // 2
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Post.dup_group, Post.id, Post.title_norm, Post.text_norm)
                .order_by(Post.id.desc())
                .limit(limit)
            ).all()
        from tingfeng.analyze.duplicates import strip_for_dedup

        self._seen_post = rows[0][1] if rows else 0

        items = []
        for group, pid, title_norm, text_norm in reversed(rows):
            stripped = strip_for_dedup(f"{title_norm} {text_norm}" if title_norm else text_norm)
            if len(stripped) >= self.settings.dedup_min_chars:
                items.append((group or pid, stripped))
        self.near.warm(items)
        return len(items)

    def ingest(
        self,
        source: SourceRef,
        items: Iterable[RawItem | ItemError],
        *,
        batch_size: int | None = None,
        on_batch: Callable[[IngestStats], None] | None = None,
    ) -> IngestStats:
        """Store every item; returns counts. Bad items are counted, never fatal."""
        with self._lock:
            if not self._warmed:
                self.warm()
        total = IngestStats()
        start = time.perf_counter()
        size = batch_size or self.settings.ingest_batch_size
        iterator: Iterator[RawItem | ItemError] = iter(items)

        def batches() -> Iterator[list[RawItem | ItemError]]:
            while True:
                t0 = time.perf_counter()
                batch = list(islice(iterator, size))
                total.add_stage("read", time.perf_counter() - t0)
                if not batch:
                    return
                yield batch

        def finish(prepared: PreparedBatch) -> None:
            stats = self.store_prepared(source, prepared)
            total.merge(stats)
            if on_batch is not None:
                on_batch(stats)

        for batch in batches():
            finish(self._prepare(source, batch))
        total.seconds = time.perf_counter() - start
        return total

    def ingest_from(
        self,
        source: SourceRef,
        reader: Callable[[], Iterable[RawItem | ItemError]],
        *,
        on_batch: Callable[[IngestStats], None] | None = None,
    ) -> IngestStats:
        """Ingest what `reader()` yields, reading and analysing in a helper process.

        For large imports: the helper reads the file and analyses each batch while this
        process writes the previous one, so both cores work. `reader` must be picklable (a
        module-level function or a functools.partial of one). A reading error stops the
        import after the batches before it are stored, and is raised as a CollectError.
        """
        if self.settings.prepare_processes <= 0:
            return self.ingest(source, reader(), on_batch=on_batch)
        with self._lock:
            if not self._warmed:
                self.warm()
        total = IngestStats()
        start = time.perf_counter()
        context = multiprocessing.get_context("spawn")  # not fork: this process may run threads
        queue = context.Queue(maxsize=4)
        helper = context.Process(
            target=_produce,
            args=(self.settings, source, reader, self.engine.dialect.name, queue),
            name="tingfeng-prepare",
            daemon=True,
        )
        helper.start()
        try:
            while True:
                try:
                    kind, payload = queue.get(timeout=1.0)
                except Empty:
                    if not helper.is_alive():
                        raise CollectError(
                            "The analysis process stopped unexpectedly; the posts stored so far "
                            "stay stored. Run the import again to finish it."
                        ) from None
                    continue
                if kind == "done":
                    break
                if kind == "error":
                    message, permanent = payload
                    raise CollectError(message, permanent=permanent)
                total.add_stage("read", payload.read_seconds)
                stats = self.store_prepared(source, payload)
                total.merge(stats)
                if on_batch is not None:
                    on_batch(stats)
        finally:
            helper.join(timeout=5)
            if helper.is_alive():
                helper.terminate()
        total.seconds = time.perf_counter() - start
        return total

    def ingest_batch(self, source: SourceRef, batch: list[RawItem | ItemError]) -> IngestStats:
        return self.store_prepared(source, prepare_batch(self.preparer, source, batch, self.now()))

    def _prepare(self, source: SourceRef, batch: list[RawItem | ItemError]) -> PreparedBatch:
        if self.watcher is not None:
            self.watcher.check()
        return prepare_batch(self.preparer, source, batch, self.now())

    def store_prepared(self, source: SourceRef, prepared: PreparedBatch) -> IngestStats:
        stats = IngestStats(read=prepared.read, duplicates=prepared.repeats)
        for where, message in prepared.errors:
            stats.add_error(where, message)
        stats.add_stage("prepare", prepared.seconds)
        if prepared.drafts:
            with self._lock:
                self._store(source, prepared.drafts, stats)
        return stats

    def _store(self, source: SourceRef, drafts: dict[str, Draft], stats: IngestStats) -> None:
        t0 = time.perf_counter()
        if not self._warmed:
            self.warm()
        try:
            self._store_in_transaction(source, drafts, stats, t0)
        except Exception:
            self._forget_unstored()
            raise
        if stats.deliveries and self.settings.outbox_wake:
            from tingfeng.alerts import outbox

            outbox.notify()  # after the commit: the dispatcher of this process sends at once
        self._refresh_events(stats)

    def _forget_unstored(self) -> None:
        """A batch's transaction failed: the memories hold posts that were never stored (and
        whose ids SQLite will give to other posts). Rebuild them from the database."""
        self.near.clear()
        self._warmed = False
        self._seen_post = 0
        if self.event_stage is not None:
            self.event_stage.forget()

    def _store_in_transaction(
        self, source: SourceRef, drafts: dict[str, Draft], stats: IngestStats, t0: float
    ) -> None:
        with write_transaction(self.engine) as conn:
            self._take_turn(conn)
            present = store.existing_uids(conn, list(drafts))
            stats.duplicates += len(present)
            new = [d for uid, d in drafts.items() if uid not in present]
            if not new:
                stats.add_stage("store", time.perf_counter() - t0)
                return
            ids = store.allocate_ids(conn, len(new))
            for draft, pid in zip(new, ids, strict=True):
                draft.row["id"] = pid
            self._seen_post = max(self._seen_post, *ids)
            t1 = time.perf_counter()
            stats.add_stage("store", t1 - t0)
            self._assign_groups(conn, new, stats)
            t2 = time.perf_counter()
            stats.add_stage("dedup", t2 - t1)
            self._link_parents(conn, new)
            rows = [d.row for d in new]
            inserted = store.insert_posts(conn, rows, [d.values for d in new])
            store.link_waiting_children(
                conn, {d.row["uid"]: d.row["id"] for d in new if d.row["id"] in inserted}
            )
            t3 = time.perf_counter()
            stats.add_stage("store", t3 - t2)
            dialect = conn.dialect.name
            add_to_index(
                conn,
                [
                    (
                        d.row["id"],
                        sort_key(d.row["published_at"], d.row["id"]),
                        d.index or index_terms(dialect, d.row["title_norm"], d.row["text_norm"]),
                    )
                    for d in new
                    if d.row["id"] in inserted
                ],
            )
            t4 = time.perf_counter()
            stats.add_stage("index", t4 - t3)
            analysed = [
                (d.row["id"], d.reading)
                for d in new
                if d.reading is not None and d.row["id"] in inserted
            ]
            if analysed:
                store_readings(
                    conn, analysed, self.preparer.reader.version if self.preparer.reader else ""
                )
                stats.add_stage("readings", time.perf_counter() - t4)
                t4 = time.perf_counter()
            stats.duplicates += len(rows) - len(inserted)
            stats.stored += len(inserted)
            t5 = time.perf_counter()
            stats.add_stage("store", t5 - t4)
            self._match_and_group(conn, [d for d in new if d.row["id"] in inserted], stats)
            t6 = time.perf_counter()
            stats.add_stage("topics", t6 - t5)
            # Last: it locks the source's row until the commit, and workers storing batches of
            # one source would otherwise wait for each other through the whole transaction.
            store.bump_source(conn, source.id, len(inserted), rows[0]["fetched_at"])
            stats.add_stage("store", time.perf_counter() - t6)

    def _take_turn(self, conn) -> None:  # type: ignore[no-untyped-def]
        """Share this process's memories with the other ingest processes (scale-out workers,
        or `tingfeng ingest` beside `serve`) before storing a batch.

        While topics are active, batches are stored one process at a time (the grouping lock,
        held to the commit; on SQLite the write transaction is the lock already), so event
        grouping and near-duplicate groups come out as one process would make them. The
        analysis before (`prepare`) still runs in parallel. Then the near-duplicate memory
        replays the posts the others stored since it last looked; the event stage does the
        same with the grouping journal (tingfeng.events.journal)."""
        if self.topic_stage is not None:
            self.topic_stage.check()
            if self.topic_stage.active:
                from tingfeng.events.journal import take_grouping_lock

                take_grouping_lock(conn)
        if self._warmed:
            self._near_catch_up(conn)

    def _near_catch_up(self, conn) -> int:  # type: ignore[no-untyped-def]
        """Feed the near-duplicate memory the posts other processes stored since it last
        looked, through the same decisions it made for them (so its state is theirs)."""
        from tingfeng.analyze.duplicates import strip_for_dedup

        rows = conn.execute(
            select(Post.id, Post.title_norm, Post.text_norm, Post.dup_kind)
            .where(Post.id > self._seen_post)
            .order_by(Post.id)
        ).all()
        if not rows:
            return 0
        self._seen_post = rows[-1][0]
        items = []
        for pid, title_norm, text_norm, kind in rows:
            if kind == "exact":  # found by its hash in the database, never in the memory
                continue
            stripped = strip_for_dedup(f"{title_norm} {text_norm}" if title_norm else text_norm)
            if len(stripped) >= self.settings.dedup_min_chars:
                items.append((pid, stripped))
        self.near.find_or_add_many(items)
        return len(rows)

    def _match_and_group(self, conn, stored: list[Draft], stats: IngestStats) -> None:  # type: ignore[no-untyped-def]
        """Topic matches, event grouping and alert rules for the posts just stored (same
        transaction: an alert exists exactly when its post does)."""
        if not stored:
            return
        matched: dict[int, list[Any]] = {}
        grouped: dict[int, int] = {}
        started: set[int] = set()
        if self.topic_stage is not None:
            matched, grouped = self._topics_and_events(conn, stored, stats)
            if self.event_stage is not None and grouped:
                started = set(self.event_stage.last_new.values())
        if self.alert_stage is None:
            from tingfeng.alerts.engine import AlertStage

            self.alert_stage = AlertStage(self.engine, self.settings)
        t0 = time.perf_counter()
        result = self.alert_stage.on_stored(
            conn,
            [(d.row, d.reading) for d in stored],
            matched=matched,
            grouped=grouped,
            started=started,
            doc_for=self._topic_doc,
            now=self.now(),
        )
        stats.alerts += result.raised
        stats.deliveries += result.deliveries
        stats.add_stage("alerts", time.perf_counter() - t0)

    def _topic_doc(self, conn, row: dict[str, Any], reading: Any) -> Any:  # type: ignore[no-untyped-def]
        """The post as the topic language sees it (for rules with a `query` condition)."""
        from tingfeng.topics.stream import TopicStage, new_post

        if self.topic_stage is None:
            self.topic_stage = TopicStage(self.engine)
        post = new_post(row, reading)
        names = self.topic_stage._source_names(conn, {post.source_id})
        return self.topic_stage.doc(post, names.get(post.source_id, ""))

    def _topics_and_events(
        self,
        conn,  # type: ignore[no-untyped-def]
        stored: list[Draft],
        stats: IngestStats,
    ) -> tuple[dict[int, list[Any]], dict[int, int]]:
        assert self.topic_stage is not None
        from tingfeng.events.stream import stored_post
        from tingfeng.topics.stream import new_post

        self.topic_stage.check()
        if self.event_stage is None:
            if not self.topic_stage.active:
                return {}, {}
            # Created on first need: the grouper loads a dictionary and warms on stored posts.
            from tingfeng.events.grouping import GroupingParams
            from tingfeng.events.stream import EventStage

            self.event_stage = EventStage(
                self.engine, GroupingParams(window_hours=self.settings.event_window_hours)
            )
        matched = self.topic_stage.match(conn, [new_post(d.row, d.reading) for d in stored])
        stats.matched += len(matched)
        posts = [stored_post(d.row, d.reading) for d in stored]
        grouped = self.event_stage.group(conn, posts, matched)
        stats.grouped_into_events += len(grouped)
        times = [p.published_at for p in posts if p.published_at is not None]
        if times:
            spikes = self.event_stage.flush_spikes(conn, max(times))
            if spikes:
                from tingfeng.alerts.signals import spike_signals
                from tingfeng.collect import hot_mode

                hot_mode.on_spikes(conn, self.settings, [s.series for s in spikes], self.now())

                if self.alert_stage is None:
                    from tingfeng.alerts.engine import AlertStage

                    self.alert_stage = AlertStage(self.engine, self.settings)
                result = self.alert_stage.on_spikes(conn, spike_signals(conn, spikes), self.now())
                stats.alerts += result.raised
                stats.deliveries += result.deliveries
        return matched, grouped

    def _refresh_events(self, stats: IngestStats) -> None:
        """Recompute profiles and grades of the events this process touched, when stale."""
        stage = self.event_stage
        if stage is None or not stage.touched:
            return
        now = time.monotonic()
        if now - self._refreshed < min(self.settings.event_refresh_s, 5.0):
            return
        self._refreshed = now
        from tingfeng.events.profile import grading_model_for, refresh_due

        touched, stage.touched = list(stage.touched), set()
        t0 = time.perf_counter()
        try:
            model = grading_model_for(self.settings.grading_model)
        except (OSError, ValueError) as exc:
            log.error("grading model %s cannot be used (%s); using the defaults",
                      self.settings.grading_model, exc)  # fmt: skip
            model = None
        if self._on_level is None:
            from tingfeng.alerts.signals import level_listener

            self._on_level = level_listener(self.settings, self.now)
        refresh_due(
            self.engine, touched, min_age_s=self.settings.event_refresh_s, model=model,
            on_level=self._on_level,
        )  # fmt: skip
        stats.add_stage("events", time.perf_counter() - t0)

    def _assign_groups(self, conn, new: list[Draft], stats: IngestStats) -> None:  # type: ignore[no-untyped-def]
        groupable = [d for d in new if d.dedup_text]
        for d in new:
            d.row["dup_group"] = d.row["id"]
            d.row["dup_kind"] = "original"
        if not groupable:
            return
        known = store.groups_by_hash(conn, list({d.row["content_hash"] for d in groupable}))
        pending: list[Draft] = []
        for d in groupable:
            chash = d.row["content_hash"]
            group = known.get(chash)
            if group is not None:
                d.row["dup_group"], d.row["dup_kind"] = group, "exact"
                stats.grouped += 1
            else:
                known[chash] = d.row["id"]
                pending.append(d)
        if pending:
            groups = self.near.find_or_add_many([(d.row["id"], d.dedup_text) for d in pending])
            for d, group in zip(pending, groups, strict=True):
                if group != d.row["id"]:
                    d.row["dup_group"], d.row["dup_kind"] = group, "near"
                    stats.grouped += 1

    def _link_parents(self, conn, new: list[Draft]) -> None:  # type: ignore[no-untyped-def]
        wanted = {k for d in new for k in (d.row["reposts_of_key"], d.row["reply_to_key"]) if k}
        if not wanted:
            for d in new:
                d.row["reposts_of_id"] = d.row["reply_to_id"] = None
            return
        in_batch = {d.row["uid"]: d.row["id"] for d in new}
        missing = [k for k in wanted if k not in in_batch]
        found = store.ids_by_uid(conn, missing) if missing else {}
        for d in new:
            for key_col, id_col in (
                ("reposts_of_key", "reposts_of_id"),
                ("reply_to_key", "reply_to_id"),
            ):
                key = d.row[key_col]
                d.row[id_col] = (in_batch.get(key) or found.get(key)) if key else None
