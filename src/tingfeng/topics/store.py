"""Saved topics (监测方案): create, change (each change kept as a version), list, remove.

A topic is validated when it is saved: the query must parse and every exclusion must be a
non-empty phrase, so a broken topic never reaches the stream matcher.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from tingfeng.db.models import Source, TopicVersion, utc_now
from tingfeng.db.models import Topic as TopicRow
from tingfeng.topics import QuerySyntaxError, Topic, parse_query

MAX_NAME_CHARS = 200
MAX_EXCLUSIONS = 200


class TopicError(ValueError):
    """A topic that cannot be saved or found; the message says what to change."""


@dataclass(frozen=True, slots=True)
class SavedTopic:
    id: int
    name: str
    query: str
    exclusions: tuple[str, ...]
    source_ids: tuple[int, ...] | None
    enabled: bool
    version: int
    note: str | None
    created_at: datetime
    updated_at: datetime

    def as_matcher_topic(self) -> Topic:
        return Topic(
            id=self.id,
            query=self.query,
            exclusions=self.exclusions,
            source_ids=frozenset(self.source_ids) if self.source_ids is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "query": self.query,
            "exclusions": list(self.exclusions),
            "source_ids": list(self.source_ids) if self.source_ids is not None else None,
            "enabled": self.enabled,
            "version": self.version,
            "note": self.note,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def _saved(row: Any) -> SavedTopic:
    return SavedTopic(
        id=row.id,
        name=row.name,
        query=row.query,
        exclusions=tuple(row.exclusions or ()),
        source_ids=tuple(row.source_ids) if row.source_ids is not None else None,
        enabled=bool(row.enabled),
        version=row.version,
        note=row.note,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def check_query(query: str) -> None:
    """Raise QuerySyntaxError (position and what was expected) for a query that cannot run."""
    parse_query(query)


def clean_exclusions(exclusions: Iterable[str]) -> list[str]:
    """The exclusion phrases as saved (trimmed, unique); TopicError for one that cannot be matched."""
    out: list[str] = []
    for phrase in exclusions:
        phrase = phrase.strip()
        if not phrase:
            continue
        if '"' in phrase:
            raise TopicError(f"an exclusion phrase cannot contain a double quote: {phrase!r}")
        if phrase not in out:
            out.append(phrase)
    if len(out) > MAX_EXCLUSIONS:
        raise TopicError(f"a topic can have at most {MAX_EXCLUSIONS} exclusion phrases")
    # Each phrase must itself be something the matcher can look for.
    for phrase in out:
        try:
            parse_query(f'"{phrase}"')
        except QuerySyntaxError as exc:
            raise TopicError(f"the exclusion {phrase!r} cannot be matched: {exc}") from exc
    return out


def _check_sources(conn: Connection, source_ids: Sequence[int] | None) -> list[int] | None:
    if source_ids is None:
        return None
    ids = sorted({int(s) for s in source_ids})
    if ids:
        known = set(conn.execute(select(Source.id).where(Source.id.in_(ids))).scalars())
        missing = [i for i in ids if i not in known]
        if missing:
            raise TopicError(
                f"no source with id {missing[0]}; see `tingfeng source list` for the ids"
            )
    return ids


def resolve_sources(conn: Connection, refs: Sequence[str]) -> list[int]:
    """Source ids for names or ids given by a person."""
    ids: list[int] = []
    for ref in refs:
        ref = ref.strip()
        row = (
            conn.execute(select(Source.id).where(Source.id == int(ref))).first()
            if ref.isdigit()
            else conn.execute(select(Source.id).where(Source.name == ref)).first()
        )
        if row is None:
            raise TopicError(f"no source {ref!r}; see `tingfeng source list`")
        ids.append(row[0])
    return ids


def _record_version(conn: Connection, topic: SavedTopic, by: str | None) -> None:
    conn.execute(
        insert(TopicVersion).values(
            topic_id=topic.id,
            version=topic.version,
            query=topic.query,
            exclusions=list(topic.exclusions),
            source_ids=list(topic.source_ids) if topic.source_ids is not None else None,
            saved_at=topic.updated_at,
            saved_by=by,
        )
    )
    from tingfeng import audit

    audit.record(
        conn, audit.Actor(None, by or "system"), "settings.topic", f"topic:{topic.id}",
        {"name": topic.name, "version": topic.version, "query": topic.query,
         "exclusions": list(topic.exclusions)},
    )  # fmt: skip


def create_topic(
    conn: Connection,
    name: str,
    query: str,
    *,
    exclusions: Iterable[str] = (),
    source_ids: Sequence[int] | None = None,
    enabled: bool = True,
    note: str | None = None,
    by: str | None = None,
) -> SavedTopic:
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise TopicError(f"a topic needs a name of 1 to {MAX_NAME_CHARS} characters")
    if conn.execute(select(TopicRow.id).where(TopicRow.name == name)).first():
        raise TopicError(f"a topic named {name!r} exists already; choose another name")
    check_query(query)
    excl = clean_exclusions(exclusions)
    sources = _check_sources(conn, source_ids)
    now = utc_now()
    topic_id = conn.execute(
        insert(TopicRow)
        .values(
            name=name,
            query=query.strip(),
            exclusions=excl,
            source_ids=sources,
            enabled=enabled,
            version=1,
            note=note,
            created_at=now,
            updated_at=now,
        )
        .returning(TopicRow.id)
    ).scalar_one()
    topic = get_topic(conn, topic_id)
    _record_version(conn, topic, by)
    return topic


def get_topic(conn: Connection, ref: int | str) -> SavedTopic:
    """A topic by id or by name."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isdigit()):
        row = conn.execute(select(TopicRow).where(TopicRow.id == int(ref))).first()
    else:
        row = conn.execute(select(TopicRow).where(TopicRow.name == ref.strip())).first()
    if row is None:
        raise TopicError(f"no topic {ref!r}; see `tingfeng topics list`")
    return _saved(row)


def list_topics(conn: Connection, *, enabled_only: bool = False) -> list[SavedTopic]:
    stmt = select(TopicRow).order_by(TopicRow.id)
    if enabled_only:
        stmt = stmt.where(TopicRow.enabled.is_(True))
    return [_saved(r) for r in conn.execute(stmt)]


def update_topic(
    conn: Connection,
    ref: int | str,
    *,
    name: str | None = None,
    query: str | None = None,
    exclusions: Iterable[str] | None = None,
    source_ids: Sequence[int] | bool | None = False,
    enabled: bool | None = None,
    note: str | None = None,
    by: str | None = None,
) -> SavedTopic:
    """Change a topic; a change of what it matches becomes a new version.

    `source_ids=False` (the default) leaves the sources alone; None means every source.
    """
    topic = get_topic(conn, ref)
    values: dict[str, Any] = {}
    if name is not None and name.strip() != topic.name:
        name = name.strip()
        if not name or len(name) > MAX_NAME_CHARS:
            raise TopicError(f"a topic needs a name of 1 to {MAX_NAME_CHARS} characters")
        if conn.execute(select(TopicRow.id).where(TopicRow.name == name)).first():
            raise TopicError(f"a topic named {name!r} exists already; choose another name")
        values["name"] = name
    if query is not None and query.strip() != topic.query:
        check_query(query)
        values["query"] = query.strip()
    if exclusions is not None:
        excl = clean_exclusions(exclusions)
        if tuple(excl) != topic.exclusions:
            values["exclusions"] = excl
    if source_ids is not False:
        sources = _check_sources(conn, source_ids)  # type: ignore[arg-type]
        current = list(topic.source_ids) if topic.source_ids is not None else None
        if sources != current:
            values["source_ids"] = sources
    if enabled is not None and enabled != topic.enabled:
        values["enabled"] = enabled
    if note is not None:
        values["note"] = note
    if not values:
        return topic
    new_version = bool({"query", "exclusions", "source_ids"} & set(values))
    values["updated_at"] = utc_now()
    if new_version:
        values["version"] = topic.version + 1
    conn.execute(update(TopicRow).where(TopicRow.id == topic.id).values(**values))
    saved = get_topic(conn, topic.id)
    if new_version:
        _record_version(conn, saved, by)
    return saved


def delete_topic(conn: Connection, ref: int | str) -> SavedTopic:
    """Remove a topic with its matches; posts and events stay."""
    topic = get_topic(conn, ref)
    from tingfeng.db.models import TopicMatch

    conn.execute(delete(TopicMatch).where(TopicMatch.topic_id == topic.id))
    conn.execute(delete(TopicVersion).where(TopicVersion.topic_id == topic.id))
    conn.execute(delete(TopicRow).where(TopicRow.id == topic.id))
    from tingfeng import audit

    audit.record(conn, None, "settings.topic_remove", f"topic:{topic.id}", {"name": topic.name})
    return topic


def topic_versions(conn: Connection, ref: int | str) -> list[dict[str, Any]]:
    topic = get_topic(conn, ref)
    rows = conn.execute(
        select(TopicVersion).where(TopicVersion.topic_id == topic.id).order_by(TopicVersion.version)
    )
    return [
        {
            "version": r.version,
            "query": r.query,
            "exclusions": r.exclusions,
            "source_ids": r.source_ids,
            "saved_at": r.saved_at.isoformat(),
            "saved_by": r.saved_by,
        }
        for r in rows
    ]


def topics_stamp(conn: Connection) -> tuple[int, int, str]:
    """Changes whenever a topic is added, changed, switched or removed (cheap to poll)."""
    count, versions, last = conn.execute(
        select(func.count(TopicRow.id), func.sum(TopicRow.version), func.max(TopicRow.updated_at))
    ).one()
    return int(count or 0), int(versions or 0), str(last)
