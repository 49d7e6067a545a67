"""Streaming event grouping: each post joins an open event or starts a new one, as it arrives.

Rules, in order (docs/events-grouping.md explains the choices):

1. A repost whose parent the grouper knows joins the parent's event; a duplicate joins its
   original's event. Links beat content: the platform says they belong together.
2. Otherwise the post's TF-IDF vector (terms from `similarity.TermExtractor`, document
   frequencies learned from the stream itself) is compared with the open events that share one
   of its heaviest terms (an inverted index over the open events only, so the cost does not grow
   with history). It joins the most similar one if the similarity reaches `threshold`, else it
   starts a new event.
3. An event closes when it has been idle for `window_hours` (by post time); closed events leave
   the index and drop their vectors, but keep their members so that a late repost still finds
   its parent. `forget_before` drops them altogether.

Decisions are final: the live system stores event ids, so nothing is revised behind its back.
People's corrections are remembered: `merge` aliases one event to the other (must-link) and
`split` rebuilds both events' vectors from their own members, so later posts like the split-off
part follow it and reposts of split-off posts join the new event (cannot-link).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple

from tingfeng.analyze.segment import Segmenter
from tingfeng.events.similarity import TermExtractor, sparse_dot, unit_vector

__all__ = ["EventGrouper", "GroupItem", "GroupingParams", "Key"]

Key = int | str


@dataclass
class GroupItem:
    """A post to group."""

    key: Key
    text: str
    title: str = ""
    lang: str | None = None
    time: datetime | None = None  # None: arrival order; ages with the latest time seen
    parent: Key | None = None  # repost link; may be unknown to the grouper
    duplicate_of: Key | None = None  # original of a (near-)duplicate group
    keywords: tuple[str, ...] = ()  # precomputed keywords/entities, weighted like a title


@dataclass
class GroupingParams:
    """Grouping settings; the defaults were chosen on mmds2025-dev only (see the docs)."""

    threshold: float = 0.2  # similarity over all terms
    anchor_threshold: float = 0.3  # similarity over anchors (names, numbers, dates) alone
    window_hours: float = 72.0
    linkage: Literal["centroid", "average", "single"] = "average"
    title_weight: float = 2.0
    keyword_weight: float = 1.0
    top_terms: int = 100  # terms kept per post vector
    event_terms: int = 400  # terms kept per event centroid
    query_terms: int = 12  # a post's heaviest terms used to find candidate events
    max_candidates: int = 40  # candidates scored exactly, best shared-term overlap first
    max_posting: int = 300  # terms in more open events than this find no candidates
    max_open_events: int = 20_000
    max_events: int = 500_000  # events remembered at all (members, for reposts)
    max_vocabulary: int = 1_000_000


class _Vectors(NamedTuple):
    full: dict[str, float]
    anchors: dict[str, float]


_EMPTY = _Vectors({}, {})


@dataclass(slots=True, eq=False)
class _Event:
    id: int
    members: list[Key] = field(default_factory=list)
    total: dict[str, float] = field(default_factory=dict)  # sum of member unit vectors
    norm2: float = 0.0
    anchor_total: dict[str, float] = field(default_factory=dict)
    anchor_norm2: float = 0.0
    vectors: dict[Key, _Vectors] = field(default_factory=dict)
    indexed: set[str] = field(default_factory=set)
    last: float | None = None
    open: bool = True


class EventGrouper:
    """Streaming grouper (see the module docstring). Not thread-safe: one writer at a time."""

    def __init__(
        self,
        params: GroupingParams | None = None,
        *,
        segmenter: Segmenter | None = None,
        extractor: TermExtractor | None = None,
    ) -> None:
        self.params = params or GroupingParams()
        self.extractor = extractor or TermExtractor(segmenter)
        self._events: dict[int, _Event] = {}
        self._event_of: dict[Key, int] = {}
        self._alias: dict[int, int] = {}
        self._cannot: set[frozenset[int]] = set()
        self._postings: dict[str, set[int]] = {}
        self._open: OrderedDict[int, None] = OrderedDict()  # by last activity
        self._activity: OrderedDict[int, None] = OrderedDict()  # all events, by last activity
        self._df: dict[str, int] = {}
        self._docs = 0
        self._next_id = 1
        self._clock: float | None = None

    # -- public API --------------------------------------------------------------------------

    def add(self, item: GroupItem) -> int:
        """Group one post; returns its event id (a new id means a new event)."""
        known = self.event_of(item.key)
        if known is not None:
            return known
        when = self._time_of(item)
        if when is not None:
            self._close_idle(when)
        vector = self._vector(item)
        target = None
        for link in (item.parent, item.duplicate_of):
            if link is not None and link != item.key:
                target = self.event_of(link)
                if target is not None:
                    break
        if target is None and vector.full:
            target = self._best_match(vector, when)
        if target is None:
            target = self._new_event()
        self._join(self._events[target], item.key, vector, when)
        return target

    def add_many(self, items: Iterable[GroupItem]) -> list[int]:
        """`add` each item in order."""
        return [self.add(item) for item in items]

    def observe(self, items: Iterable[GroupItem]) -> None:
        """Learn document frequencies from posts without grouping them.

        For warming a fresh grouper on recent posts (after a restart, or before scoring a file),
        so that the first posts are weighed with real IDF rather than with a handful of counts.
        """
        for item in items:
            self._counts(item, learn=True)

    def restore(self, item: GroupItem, event_id: int) -> None:
        """Put a stored post back into its stored event (rebuilding state after a restart)."""
        event_id = self._resolve(event_id)
        event = self._events.get(event_id)
        if event is None:
            event = self._events[event_id] = _Event(event_id)
            self._open[event_id] = None
            self._activity[event_id] = None
        self._next_id = max(self._next_id, event_id + 1)
        if item.key in self._event_of:
            return
        self._join(event, item.key, self._vector(item), self._time_of(item))

    def replay(self, item: GroupItem, event_id: int) -> None:
        """Put a post where another grouper put it, with the side effects `add` had there (idle
        events closed first; the event created if it was new), so that both keep one state.
        For scale-out: each ingest process replays what the others grouped."""
        if self.event_of(item.key) is not None:
            return
        when = self._time_of(item)
        if when is not None:
            self._close_idle(when)
        vector = self._vector(item)
        event_id = self._resolve(event_id)
        if event_id not in self._events:
            self._new_event(event_id)
        self._join(self._events[event_id], item.key, vector, when)

    def event_of(self, key: Key) -> int | None:
        """Event of a post, or None if the grouper does not know it (or forgot it)."""
        event_id = self._event_of.get(key)
        return None if event_id is None else self._resolve(event_id)

    def members(self, event_id: int) -> list[Key]:
        """Posts of an event in arrival order (empty for an unknown or forgotten event)."""
        event = self._events.get(self._resolve(event_id))
        return list(event.members) if event else []

    @property
    def next_id(self) -> int:
        """The id the next new event will get (ids only grow)."""
        return self._next_id

    def reserve_ids(self, below: int) -> None:
        """Give new events ids of at least `below` (lower ids are used elsewhere, e.g. stored)."""
        self._next_id = max(self._next_id, below)

    def events(self) -> Iterator[int]:
        """Ids of the events the grouper remembers."""
        return iter(list(self._events))

    def merge(self, keep: int, other: int) -> None:
        """A person merged `other` into `keep`: from now on they are one event (must-link)."""
        keep, other = self._resolve(keep), self._resolve(other)
        if keep == other:
            return
        a, b = self._events.get(keep), self._events.get(other)
        if a is None or b is None:
            raise KeyError(f"unknown event: {keep if a is None else other}")
        for key in b.members:
            self._event_of[key] = keep
        a.members.extend(b.members)
        self._unindex(b)
        self._unindex(a)
        a.vectors.update(b.vectors)
        a.last = _latest(a.last, b.last)
        self._rebuild(a)
        self._cannot = {pair for pair in self._cannot if other not in pair}
        self._alias[other] = keep
        del self._events[other]
        self._open.pop(other, None)
        self._activity.pop(other, None)
        self._touch(a)

    def split(self, event_id: int, keys: Iterable[Key], *, new_id: int | None = None) -> int:
        """A person moved `keys` out of an event: they form a new event; returns its id.

        Both events' vectors are rebuilt from their own members, so later posts like the moved
        ones join the new event, and the two are remembered as different (cannot-link).
        """
        event_id = self._resolve(event_id)
        old = self._events.get(event_id)
        if old is None:
            raise KeyError(f"unknown event: {event_id}")
        moving = set(keys)
        if not moving:
            raise ValueError("split needs at least one post")
        foreign = [
            k for k in moving if self._event_of.get(k) is None or self.event_of(k) != event_id
        ]
        if foreign:
            raise ValueError(f"not members of event {event_id}: {sorted(map(str, foreign))}")
        if new_id is not None:
            # The stored split already chose the new event's id (tingfeng.events.decisions).
            if new_id in self._events:
                raise ValueError(f"event {new_id} exists already")
            self._next_id, before = new_id, self._next_id
            new = self._events[self._new_event()]
            self._next_id = max(before, new_id + 1)
        else:
            new = self._events[self._new_event()]
        self._unindex(old)
        new.members = [k for k in old.members if k in moving]
        old.members = [k for k in old.members if k not in moving]
        new.vectors = {k: v for k, v in old.vectors.items() if k in moving}
        old.vectors = {k: v for k, v in old.vectors.items() if k not in moving}
        new.last = old.last
        for key in new.members:
            self._event_of[key] = new.id
        self._rebuild(old)
        self._rebuild(new)
        self._cannot.add(frozenset((old.id, new.id)))
        self._touch(new)
        return new.id

    def cannot_link(self, a: int, b: int) -> bool:
        """Whether a person said these two events are different (by `split`)."""
        return frozenset((self._resolve(a), self._resolve(b))) in self._cannot

    def forget_before(self, t: datetime) -> None:
        """Drop every event idle since before `t`, members included (memory bound).

        Events that never saw a timed post (a stream without times) are kept; `max_events`
        bounds them.
        """
        cutoff = t.timestamp()
        for event_id in list(self._activity):
            event = self._events[event_id]
            if event.last is not None and event.last < cutoff:
                self._drop(event)

    @property
    def open_events(self) -> int:
        """Events currently in the candidate index."""
        return len(self._open)

    # -- internals ---------------------------------------------------------------------------

    def _time_of(self, item: GroupItem) -> float | None:
        """Seconds of the post's time; an untimed post takes the latest time seen so far, so
        that untimed posts in a timed stream still age out of the window."""
        if item.time is None:
            return self._clock
        when = item.time.timestamp()
        self._clock = when if self._clock is None else max(self._clock, when)
        return when

    def _resolve(self, event_id: int) -> int:
        while event_id in self._alias:
            event_id = self._alias[event_id]
        return event_id

    def _new_event(self, event_id: int | None = None) -> int:
        if event_id is None:
            event_id = self._next_id
        self._next_id = max(self._next_id, event_id + 1)
        self._events[event_id] = _Event(event_id)
        self._open[event_id] = None
        self._activity[event_id] = None
        while len(self._activity) > self.params.max_events:
            self._drop(self._events[next(iter(self._activity))])
        return event_id

    def _counts(self, item: GroupItem, *, learn: bool) -> tuple[dict[str, float], dict[str, float]]:
        p = self.params
        full, anchors = self.extractor.counts(
            item.text or "",
            item.title or "",
            item.keywords,
            title_weight=p.title_weight,
            keyword_weight=p.keyword_weight,
        )
        if learn and full:
            df = self._df
            self._docs += 1
            for term in full:
                df[term] = df.get(term, 0) + 1
            if len(df) > p.max_vocabulary:
                # Crude bound: forget terms seen once (typos, one-off names) when full.
                self._df = {t: n for t, n in df.items() if n > 1}
        return full, anchors

    def _vector(self, item: GroupItem) -> _Vectors:
        full, anchors = self._counts(item, learn=True)
        if not full:
            return _EMPTY
        docs = self._docs + 1
        df = self._df
        log = math.log
        idf = {t: log(docs / (df.get(t, 0) + 1)) + 1.0 for t in full}
        top = self.params.top_terms
        return _Vectors(
            unit_vector({t: tf * idf[t] for t, tf in full.items()}, top),
            unit_vector({t: tf * idf.get(t, 1.0) for t, tf in anchors.items()}, top),
        )

    def _query(self, vectors: _Vectors) -> list[tuple[str, float]]:
        """The heaviest terms of both vectors: what finds candidate events."""
        n = self.params.query_terms
        found: dict[str, float] = {}
        for vector in vectors:
            for term, weight in sorted(vector.items(), key=lambda kv: kv[1], reverse=True)[:n]:
                found[term] = max(found.get(term, 0.0), weight)
        return list(found.items())

    def _best_match(self, vectors: _Vectors, when: float | None) -> int | None:
        p = self.params
        overlap: dict[int, float] = {}
        postings = self._postings
        for term, weight in self._query(vectors):
            posting = postings.get(term)
            if not posting or len(posting) > p.max_posting:
                continue
            for event_id in posting:
                overlap[event_id] = overlap.get(event_id, 0.0) + weight
        if not overlap:
            return None
        if len(overlap) > p.max_candidates:
            candidates = sorted(overlap, key=overlap.__getitem__, reverse=True)[: p.max_candidates]
        else:
            candidates = list(overlap)
        # Each channel's similarity over its own threshold: 1.0 or more on either joins.
        best, best_score = None, 1.0
        window = p.window_hours * 3600.0
        for event_id in candidates:
            event = self._events[event_id]
            if when is not None and event.last is not None and abs(when - event.last) > window:
                continue
            score = self._score(vectors, event)
            if score >= best_score:
                best, best_score = event_id, score
        return best

    def _score(self, vectors: _Vectors, event: _Event) -> float:
        p = self.params
        if p.linkage == "single":
            full = max(
                (sparse_dot(vectors.full, v.full) for v in event.vectors.values()), default=0
            )
            anchor = max(
                (sparse_dot(vectors.anchors, v.anchors) for v in event.vectors.values()), default=0
            )
        elif p.linkage == "average":
            n = max(len(event.vectors), 1)
            full = sparse_dot(vectors.full, event.total) / n
            anchor = sparse_dot(vectors.anchors, event.anchor_total) / n
        else:
            full = _cosine(vectors.full, event.total, event.norm2)
            anchor = _cosine(vectors.anchors, event.anchor_total, event.anchor_norm2)
        return max(full / p.threshold, anchor / p.anchor_threshold)

    def _join(self, event: _Event, key: Key, vectors: _Vectors, when: float | None) -> None:
        self._event_of[key] = event.id
        event.members.append(key)
        event.last = _latest(event.last, when)
        if not event.open:
            # A late repost of a closed event reopens it with its own words.
            event.open = True
            event.total, event.norm2, event.vectors = {}, 0.0, {}
            event.anchor_total, event.anchor_norm2 = {}, 0.0
        if vectors.full:
            event.vectors[key] = vectors
            event.total, event.norm2 = self._add(event.total, event.norm2, vectors.full)
            event.anchor_total, event.anchor_norm2 = self._add(
                event.anchor_total, event.anchor_norm2, vectors.anchors
            )
            self._index(event, vectors)
        self._touch(event)

    def _add(
        self, total: dict[str, float], norm2: float, vector: dict[str, float]
    ) -> tuple[dict[str, float], float]:
        """`total + vector` and its squared norm (kept incrementally: events grow by one post
        at a time and a full recount of a large event's terms per post would dominate)."""
        get = total.get
        for term, weight in vector.items():
            old = get(term, 0.0)
            total[term] = new = old + weight
            norm2 += new * new - old * old
        limit = self.params.event_terms
        if len(total) > 2 * limit:
            total = dict(sorted(total.items(), key=lambda kv: kv[1], reverse=True)[:limit])
            norm2 = sum(w * w for w in total.values())
        return total, norm2

    def _index(self, event: _Event, vectors: _Vectors) -> None:
        postings = self._postings
        for term, _ in self._query(vectors):
            if term not in event.indexed:
                event.indexed.add(term)
                postings.setdefault(term, set()).add(event.id)

    def _unindex(self, event: _Event) -> None:
        postings = self._postings
        for term in event.indexed:
            posting = postings.get(term)
            if posting is not None:
                posting.discard(event.id)
                if not posting:
                    del postings[term]
        event.indexed = set()

    def _rebuild(self, event: _Event) -> None:
        """Sum vectors and index entries recomputed from the event's member vectors."""
        self._unindex(event)
        event.total, event.norm2, event.anchor_total, event.anchor_norm2 = {}, 0.0, {}, 0.0
        for vectors in event.vectors.values():
            event.total, event.norm2 = self._add(event.total, event.norm2, vectors.full)
            event.anchor_total, event.anchor_norm2 = self._add(
                event.anchor_total, event.anchor_norm2, vectors.anchors
            )
            self._index(event, vectors)

    def _touch(self, event: _Event) -> None:
        self._activity[event.id] = None
        self._activity.move_to_end(event.id)
        if event.open:
            self._open[event.id] = None
            self._open.move_to_end(event.id)
            while len(self._open) > self.params.max_open_events:
                self._close(self._events[next(iter(self._open))])

    def _close_idle(self, now: float) -> None:
        cutoff = now - self.params.window_hours * 3600.0
        # _open is in activity order; times mostly rise, so the idle ones are at the front.
        while self._open:
            event = self._events[next(iter(self._open))]
            if event.last is None or event.last >= cutoff:
                break
            self._close(event)

    def _close(self, event: _Event) -> None:
        self._unindex(event)
        event.total, event.norm2, event.vectors = {}, 0.0, {}
        event.anchor_total, event.anchor_norm2 = {}, 0.0
        event.open = False
        self._open.pop(event.id, None)

    def _drop(self, event: _Event) -> None:
        self._close(event)
        for key in event.members:
            if self._event_of.get(key) == event.id:
                del self._event_of[key]
        self._activity.pop(event.id, None)
        del self._events[event.id]
        self._alias = {a: b for a, b in self._alias.items() if b != event.id} if self._alias else {}


def _cosine(vector: dict[str, float], total: dict[str, float], norm2: float) -> float:
    return sparse_dot(vector, total) / math.sqrt(norm2) if norm2 > 0 and vector else 0.0


def _latest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
