"""Match every new post against the active topics as it is stored.

One `TopicStage` per ingesting process holds the compiled matcher of all enabled topics and
rebuilds it within `every_s` seconds of a topic being added, changed or switched off.
Matches are written in the same transaction as the posts, with the terms that matched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from tingfeng.analyze.normalize import normalize
from tingfeng.db.models import Source, TopicMatch, utc_now
from tingfeng.topics import TopicDoc, TopicMatcher
from tingfeng.topics.matcher import Hits
from tingfeng.topics.store import list_topics, topics_stamp
from tingfeng.topics.syntax import site_host

log = logging.getLogger(__name__)


@dataclass(slots=True)
class NewPost:
    """What matching needs of a post being stored."""

    id: int
    source_id: int
    title_norm: str
    text_norm: str
    url: str | None
    author: str | None
    lang: str | None
    polarity: str | None
    categories: frozenset[str]
    regions: frozenset[str]


def new_post(row: dict[str, Any], reading: Any) -> NewPost:
    """A NewPost from a draft row (tingfeng.ingest.prepare) and its reading, if any."""
    categories: set[str] = set()
    regions: set[str] = set()
    polarity = None
    if reading is not None:
        for kind, value in reading.labels():
            (categories if kind == "category" else regions).add(value)
        label = reading.polarity.label
        polarity = label if label != "unknown" else None
    return NewPost(
        id=row["id"],
        source_id=row["source_id"],
        title_norm=row.get("title_norm") or "",
        text_norm=row.get("text_norm") or "",
        url=row.get("canonical_url") or row.get("url"),
        author=row.get("author"),
        lang=row.get("lang"),
        polarity=polarity,
        categories=frozenset(categories),
        regions=frozenset(regions),
    )


class TopicStage:
    """The stream matcher of the enabled topics, kept in step with the database."""

    def __init__(self, engine: Engine, every_s: float = 5.0) -> None:
        self.engine, self.every_s = engine, every_s
        self.matcher: TopicMatcher | None = None
        self.topic_ids: tuple[int, ...] = ()
        self._stamp: tuple[int, int, str] | None = None
        self._checked = 0.0
        self._sources: dict[int, str] = {}
        self._category_names: dict[str, tuple[str, ...]] = {}

    def check(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._checked < self.every_s:
            return
        self._checked = time.monotonic()
        with self.engine.connect() as conn:
            stamp = topics_stamp(conn)
            if stamp == self._stamp:
                return
            topics = list_topics(conn, enabled_only=True)
            from tingfeng.topics.stored import category_names

            # Normalised once here, not for every post (the matcher compares normalised names).
            self._category_names = {
                slug: tuple(normalize(n) for n in names if n)
                for slug, names in category_names(conn).items()
            }
        self._sources.clear()
        built: list[Any] = []
        for topic in topics:
            try:
                built.append(topic.as_matcher_topic())
            except ValueError as exc:  # saved before a stricter parser: skip, say so
                log.warning("topic %s (%s) cannot be matched: %s", topic.id, topic.name, exc)
        self.matcher = TopicMatcher(built) if built else None
        self.topic_ids = tuple(t.id for t in built)
        self._stamp = stamp
        log.info("topic matcher ready: %d active topics", len(built))

    @property
    def active(self) -> bool:
        return self.matcher is not None

    def _source_names(self, conn: Connection, ids: set[int]) -> dict[int, str]:
        missing = [i for i in ids if i not in self._sources]
        if missing:
            for sid, name in conn.execute(
                select(Source.id, Source.name).where(Source.id.in_(missing))
            ):
                self._sources[sid] = normalize(name)
        return self._sources

    def doc(self, post: NewPost, source_name: str) -> TopicDoc:
        """A prepared document: the stored texts are normalised already, so only the short
        fields are (normalising every post's text again was half the cost of matching)."""
        categories = set(post.categories)
        for slug in post.categories:
            categories.update(self._category_names.get(slug, ()))
        title = post.title_norm
        return TopicDoc(
            text=f"{title}\n{post.text_norm}" if title else post.text_norm,
            title=title,
            site=site_host(post.url) if post.url else "",
            source=source_name,
            source_id=post.source_id,
            author=normalize(post.author) if post.author else "",
            lang=post.lang,
            regions=post.regions,
            categories=frozenset(categories),
            sentiment=post.polarity,
            level=None,  # a new post has no event yet; `level:` is for search and reports
            normalized=True,
        )

    def match(self, conn: Connection, posts: Sequence[NewPost]) -> dict[int, Hits]:
        """Match and store; returns post id -> hits for the posts that matched a topic."""
        self.check()
        if self.matcher is None or not posts:
            return {}
        names = self._source_names(conn, {p.source_id for p in posts})
        docs = [self.doc(p, names.get(p.source_id, "")) for p in posts]
        found: dict[int, Hits] = {}
        rows = []
        now = utc_now()
        for post, hits in zip(posts, self.matcher.match_many(docs), strict=True):
            if hits:
                found[post.id] = hits
                rows.extend(
                    {
                        "topic_id": h.topic_id,
                        "post_id": post.id,
                        "terms": list(h.terms),
                        "matched_at": now,
                    }
                    for h in hits
                )
        if rows:
            conn.execute(insert(TopicMatch), rows)
        return found
