"""Group matched posts into events as they are stored, and watch volumes for spikes.

The event stage runs in the ingest transaction, after the topic stage:

- posts that matched a topic go through the streaming grouper (tingfeng.events.grouping);
- so do posts that repost or duplicate a post already in an event, even when they do not match
  a topic themselves ("转发微博" matches nothing, but it is part of the story and its spread);
- each post gets an `event_posts` row saying how it joined (new, repost, duplicate, content);
- event rows get their counts and times; profile and grade are refreshed afterwards, at most
  every `refresh_s` per event (tingfeng.events.profile), since that reads the event's posts;
- hourly volumes of every topic and every event go through the spike detector; spikes are
  stored once per series and hour.

One grouper per process: after a restart it is rebuilt from the stored members of recent
events (`warm`). With several ingest processes (scale-out workers, or a `tingfeng ingest` beside
`serve`) grouping is serialised by the grouping lock and each process first replays what the
others grouped (tingfeng.events.journal), so the events are those one process would make.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from tingfeng.db.models import DetectorState, Event, EventPost, Post, SpikeRecord, utc_now
from tingfeng.events import journal
from tingfeng.events.grouping import EventGrouper, GroupingParams, GroupItem
from tingfeng.events.journal import JournalRow, take_grouping_lock
from tingfeng.events.spikes import Spike, SpikeDetector, SpikeParams

log = logging.getLogger(__name__)

SPIKE_STATE = "spikes"
OBSERVE_POSTS = 5000


@dataclass(slots=True)
class StoredPost:
    """What grouping needs of a post being stored."""

    id: int
    source_id: int
    title: str
    text: str  # normalised
    lang: str | None
    published_at: datetime | None
    reposts_of_id: int | None
    dup_group: int | None
    keywords: tuple[str, ...] = ()


def stored_post(row: dict[str, Any], reading: Any) -> StoredPost:
    keywords: tuple[str, ...] = ()
    if reading is not None:
        keywords = tuple(w for w, _ in reading.keywords[:8])
    dup = row.get("dup_group")
    return StoredPost(
        id=row["id"],
        source_id=row["source_id"],
        title=row.get("title_norm") or "",
        text=row.get("text_norm") or "",
        lang=row.get("lang"),
        published_at=row.get("published_at"),
        reposts_of_id=row.get("reposts_of_id"),
        dup_group=dup if dup is not None and dup != row["id"] else None,
        keywords=keywords,
    )


def _item(post: StoredPost) -> GroupItem:
    return GroupItem(
        key=post.id,
        text=post.text,
        title=post.title,
        lang=post.lang if post.lang in ("zh", "en") else None,
        time=post.published_at,
        parent=post.reposts_of_id,
        duplicate_of=post.dup_group,
        keywords=post.keywords,
    )


def event_title(title: str, text_: str, limit: int = 60) -> str:
    """A first title for a new event: its first post's title, or the start of its text."""
    base = (title or text_ or "").strip().replace("\n", " ")
    return base if len(base) <= limit else base[: limit - 1] + "…"


class EventStage:
    """The streaming grouper and spike detector of one ingesting process."""

    def __init__(
        self,
        engine: Engine,
        params: GroupingParams | None = None,
        spike_params: SpikeParams | None = None,
        *,
        save_every_s: float = 300.0,
    ) -> None:
        self.engine = engine
        self.grouper = EventGrouper(params)
        self.spike_params = spike_params
        self.spikes = SpikeDetector(spike_params)
        self.save_every_s = save_every_s
        self._saved_at = datetime.now(UTC)
        self._warmed = False
        self._decided = 0
        self._seq = 0  # the last grouping-journal number this grouper has seen
        self._open_seq: int | None = None  # this batch's entry, until its spikes are flushed
        self._seq_writer: str | None = None
        self.name = _process_name()
        self.touched: set[int] = set()
        self.last_new: dict[int, int] = {}

    # -- restart ---------------------------------------------------------------------------

    def warm(self, max_posts: int = 50_000) -> int:
        """Rebuild the grouper from recent events' stored members and reload spike baselines."""
        self._warmed = True
        from tingfeng.events.decisions import last_decision_id

        self.grouper = EventGrouper(self.grouper.params, extractor=self.grouper.extractor)
        with self.engine.connect() as conn:
            # Decisions made before now are already in the stored event ids restored below.
            self._decided = last_decision_id(conn)
            self._seq = journal.last_seq(conn)
            self._seq_writer = journal.writer_of(conn, self._seq)
            state = conn.execute(
                select(DetectorState.state).where(DetectorState.name == SPIKE_STATE)
            ).scalar()
            if state:
                try:
                    self.spikes = SpikeDetector.from_state(state)
                except (KeyError, TypeError, ValueError) as exc:
                    log.warning("spike baselines could not be restored (%s); starting afresh", exc)
            rows = conn.execute(
                select(
                    EventPost.event_id, Post.id, Post.title_norm, Post.text_norm, Post.lang,
                    Post.published_at, Post.reposts_of_id, Post.dup_group, Post.source_id,
                )
                .join(Post, Post.id == EventPost.post_id)
                .order_by(EventPost.post_id.desc())
                .limit(max_posts)
            ).all()  # fmt: skip
            merged = dict(
                conn.execute(
                    select(Event.id, Event.merged_into).where(Event.merged_into.is_not(None))
                ).all()
            )
        # Word weights are learned from the stream: let the grouper see recent posts first, so
        # that the first posts after a restart are not compared with a handful of counts.
        with self.engine.connect() as conn:
            recent = conn.execute(
                select(Post.title_norm, Post.text_norm, Post.lang)
                .order_by(Post.id.desc())
                .limit(OBSERVE_POSTS)
            ).all()
        self.grouper.observe(
            GroupItem(key=-i, text=body or "", title=title or "", lang=lang)
            for i, (title, body, lang) in enumerate(recent)
        )
        for event_id, pid, title, body, lang, published, parent, dup, sid in reversed(rows):
            while event_id in merged:
                event_id = merged[event_id]
            post = StoredPost(
                pid, sid, title or "", body or "", lang, published, parent,
                dup if dup != pid else None,
            )  # fmt: skip
            self.grouper.restore(_item(post), event_id)
        return len(rows)

    def forget(self) -> None:
        """The batch being grouped was not stored: rebuild from the database before the next."""
        self._warmed = False

    # -- the stage ---------------------------------------------------------------------------

    def group(
        self,
        conn: Connection,
        posts: Sequence[StoredPost],
        matched: dict[int, list[Any]],
    ) -> dict[int, int]:
        """Group the matched posts (and links to grouped ones); returns post id -> event id."""
        self.last_new: dict[int, int] = {}  # event id -> the post that started it, this batch
        # Held to the end of the ingest transaction: one process groups at a time.
        take_grouping_lock(conn)
        if not self._warmed:
            self.warm()
        else:
            self.catch_up(conn)
        self.apply_decisions(conn)
        # This batch's journal entry, whether or not anything joins an event: its spike flush
        # must be replayed by the other processes too.
        self._seq, self._seq_writer = journal.last_seq(conn) + 1, self.name
        journal.open_entry(conn, self._seq, self.name, utc_now())
        self._open_seq = self._seq
        self._observe_topics(posts, matched)
        ordered = sorted(
            posts, key=lambda p: (p.published_at or datetime.min.replace(tzinfo=UTC), p.id)
        )
        if (
            not matched
            and not self.grouper.open_events
            and not any(p.reposts_of_id is not None or p.dup_group is not None for p in ordered)
        ):
            return {}
        # Event ids are the grouper's; keep them above every stored id so they never collide.
        top = conn.execute(select(func.max(Event.id))).scalar() or 0
        self.grouper.reserve_ids(top + 1)
        out: dict[int, int] = {}
        rows = []
        now = utc_now()
        seq = self._seq
        new_events: dict[int, StoredPost] = {}
        candidates: list[StoredPost] = []
        for post in ordered:
            parent_event = self.grouper.event_of(post.reposts_of_id) if post.reposts_of_id else None
            dup_event = self.grouper.event_of(post.dup_group) if post.dup_group else None
            # Matched posts, and posts linked to a grouped one (in this batch too, in order).
            if post.id not in matched and parent_event is None and dup_event is None:
                continue
            candidates.append(post)
            before = self.grouper.next_id
            event_id = self.grouper.add(_item(post))
            if event_id >= before:  # ids only grow: a new one is a new event
                joined = "new"
                new_events[event_id] = post
            elif parent_event is not None and parent_event == event_id:
                joined = "repost"
            elif dup_event is not None and dup_event == event_id:
                joined = "duplicate"
            else:
                joined = "content"
            out[post.id] = event_id
            rows.append(
                {
                    "post_id": post.id,
                    "event_id": event_id,
                    "joined_by": joined,
                    "joined_at": now,
                    "seq": seq,
                }
            )
        if not rows:
            return {}
        self.last_new = {eid: p.id for eid, p in new_events.items()}
        if new_events:
            conn.execute(
                insert(Event),
                [
                    {
                        "id": eid,
                        "title": event_title(p.title, p.text),
                        "summary": "",
                        "status": "open",
                        "first_post_id": p.id,
                        "first_source_id": p.source_id,
                        "first_seen_at": p.published_at,
                        "last_seen_at": p.published_at,
                        "posts": 0,
                        "profiled_posts": 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for eid, p in new_events.items()
                ],
            )
        conn.execute(insert(EventPost), rows)
        self._bump_events(conn, candidates, out)
        self._observe_events(candidates, out)
        self.touched.update(out.values())
        return out

    def catch_up(self, conn: Connection) -> int:
        """Replay into this grouper what other processes grouped since it last looked.

        Called with the grouping lock held, so nothing is added to the journal meanwhile.
        Returns how many memberships were replayed."""
        self._open_seq = None
        newest = journal.last_seq(conn)
        if newest < self._seq or (
            self._seq and journal.writer_of(conn, self._seq) != self._seq_writer
        ):
            # The journal does not have what this grouper last saw: a batch it grouped was
            # rolled back (and perhaps its number reused), or the database was restored.
            # Start again from what is stored.
            log.info("grouping journal at %s, behind this grouper (%s): rebuilding", newest,
                     self._seq)  # fmt: skip
            self.warm()
            return 0
        if newest == self._seq:
            return 0
        replayed = 0
        while entries := journal.entries_since(conn, self._seq):
            by_seq: dict[int, list[JournalRow]] = defaultdict(list)
            for row in journal.rows_between(conn, entries[0][0], entries[-1][0]):
                by_seq[row.seq].append(row)
            for seq, until, writer in entries:
                replayed += self._replay(by_seq.get(seq, []))
                if until is not None:
                    self.spikes.flush(until)  # the other process stored what came out
                self._seq, self._seq_writer = seq, writer
        return replayed

    def _replay(self, rows: list[JournalRow]) -> int:
        """One batch another process grouped, in the order it grouped them (see `group`)."""
        rows.sort(key=lambda r: (r.published_at or datetime.min.replace(tzinfo=UTC), r.post_id))
        topic_posts = [r for r in rows if r.topic_ids and r.published_at is not None]
        for r in topic_posts:  # `group` counts the topics' posts first, then groups
            for topic_id in r.topic_ids:
                self.spikes.add_post(f"topic:{topic_id}", r.published_at)  # type: ignore[arg-type]
        for r in rows:
            post = StoredPost(
                r.post_id, r.source_id, r.title, r.text, r.lang, r.published_at,
                r.reposts_of_id, r.dup_group, r.keywords,
            )  # fmt: skip
            self.grouper.replay(_item(post), r.event_id)
        for r in rows:
            if r.published_at is not None:
                self.spikes.add_post(f"event:{r.event_id}", r.published_at)
        return len(rows)

    def _bump_events(
        self, conn: Connection, posts: Sequence[StoredPost], out: dict[int, int]
    ) -> None:
        added: dict[int, int] = defaultdict(int)
        last: dict[int, datetime] = {}
        for p in posts:
            eid = out[p.id]
            added[eid] += 1
            if p.published_at is not None and (eid not in last or p.published_at > last[eid]):
                last[eid] = p.published_at
        now = utc_now()
        for eid, n in added.items():
            values: dict[str, Any] = {"posts": Event.posts + n, "updated_at": now}
            if eid in last:
                values["last_seen_at"] = func.coalesce(
                    func.max(Event.last_seen_at, last[eid])
                    if conn.dialect.name == "sqlite"
                    else func.greatest(Event.last_seen_at, last[eid]),
                    last[eid],
                )
            conn.execute(update(Event).where(Event.id == eid).values(**values))

    def apply_decisions(self, conn: Connection) -> int:
        """Apply merges and splits people made since the last look (in any process)."""
        from tingfeng.events.decisions import pending_decisions

        applied = 0
        for d in pending_decisions(conn, self._decided):
            self._decided = d.id
            try:
                if d.kind == "merge" and d.other_event_id is not None:
                    self.grouper.merge(d.event_id, d.other_event_id)
                elif d.kind == "split" and d.other_event_id is not None and d.post_ids:
                    known = [k for k in d.post_ids if self.grouper.event_of(k) is not None]
                    if known:
                        self.grouper.split(d.event_id, known, new_id=d.other_event_id)
            except (KeyError, ValueError) as exc:
                # The grouper forgot one of the events (older than its memory): nothing to do.
                log.info("decision %s not applied to the grouper: %s", d.id, exc)
                continue
            applied += 1
        return applied

    # -- spikes ------------------------------------------------------------------------------

    def _observe_topics(self, posts: Sequence[StoredPost], matched: dict[int, list[Any]]) -> None:
        for p in posts:
            hits = matched.get(p.id)
            if hits and p.published_at is not None:
                for hit in hits:
                    self.spikes.add_post(f"topic:{hit.topic_id}", p.published_at)

    def _observe_events(self, posts: Sequence[StoredPost], out: dict[int, int]) -> None:
        for p in posts:
            if p.published_at is not None:
                self.spikes.add_post(f"event:{out[p.id]}", p.published_at)

    def flush_spikes(self, conn: Connection, until: datetime) -> list[Spike]:
        """Store spikes of every hour completed before `until`; save baselines now and then.

        Returns the spikes stored now: with several processes replaying one another's posts,
        another may have stored (and alerted on) the same hour already."""
        spikes = self.spikes.flush(until)
        if self._open_seq is not None:
            journal.note_flush(conn, self._open_seq, until)
        new = store_spikes(conn, spikes) if spikes else []
        if (utc_now() - self._saved_at).total_seconds() >= self.save_every_s:
            self.save_state(conn)
        return new

    def save_state(self, conn: Connection) -> None:
        state = self.spikes.state()
        now = utc_now()
        exists = conn.execute(
            select(DetectorState.name).where(DetectorState.name == SPIKE_STATE)
        ).first()
        if exists:
            conn.execute(
                update(DetectorState)
                .where(DetectorState.name == SPIKE_STATE)
                .values(state=state, updated_at=now)
            )
        else:
            conn.execute(
                insert(DetectorState).values(name=SPIKE_STATE, state=state, updated_at=now)
            )
        self._saved_at = now


def _process_name() -> str:
    """Host, pid and a per-stage token: which grouper wrote a journal entry."""
    import os
    import secrets
    import socket

    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


def store_spikes(conn: Connection, spikes: Iterable[Spike]) -> list[Spike]:
    """Insert spikes not stored yet (one per series and hour); returns those that were new."""
    new: list[Spike] = []
    now = utc_now()
    for s in spikes:
        exists = conn.execute(
            select(SpikeRecord.id).where(SpikeRecord.series == s.series, SpikeRecord.hour == s.hour)
        ).first()
        if exists:
            continue
        conn.execute(
            insert(SpikeRecord).values(
                series=s.series,
                hour=s.hour,
                count=s.count,
                expected=s.expected,
                score=s.score,
                ratio=s.ratio,
                baseline=s.baseline,
                detected_at=now,
            )
        )
        new.append(s)
    return new
