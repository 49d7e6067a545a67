"""A person's decisions about events: merge, split, override a grade. Kept and applied.

Each decision is written to `event_decisions` (the audit trail) and applied to the stored
events at once. Ingesting processes read new decisions (`pending_decisions`) and apply them to
their in-memory grouper, so later posts follow the person's choice: posts like either half of a
split event join that half, and a merged event takes the other's posts and reposts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, text, update

from tingfeng.db.models import Event, EventDecision, EventGrade, EventPost, utc_now
from tingfeng.events.grading import GradeState, Level, apply_override, clear_override


class EventError(ValueError):
    """An event decision that cannot be made; the message says why."""


def _event(conn: Connection, event_id: int) -> Any:
    row = conn.execute(select(Event).where(Event.id == event_id)).first()
    if row is None:
        raise EventError(f"no event {event_id}; see `tingfeng events list`")
    return row


def resolve(conn: Connection, event_id: int) -> int:
    """The event a merged event now lives in."""
    seen = set()
    while True:
        row = _event(conn, event_id)
        if row.merged_into is None or event_id in seen:
            return event_id
        seen.add(event_id)
        event_id = row.merged_into


def merge_events(
    conn: Connection, keep: int, other: int, *, by: str, reason: str | None = None
) -> int:
    """Move `other`'s posts into `keep`; `other` is marked merged and points at `keep`."""
    keep, other = resolve(conn, keep), resolve(conn, other)
    if keep == other:
        raise EventError(f"events {keep} and {other} are one event already")
    conn.execute(update(EventPost).where(EventPost.event_id == other).values(event_id=keep))
    moved = _event(conn, other).posts
    now = utc_now()
    conn.execute(
        update(Event)
        .where(Event.id == other)
        .values(status="merged", merged_into=keep, posts=0, updated_at=now)
    )
    conn.execute(
        update(Event)
        .where(Event.id == keep)
        .values(posts=Event.posts + moved, profiled_at=None, updated_at=now)
    )
    _record(conn, "merge", keep, other_event_id=other, reason=reason, by=by)
    return keep


def split_event(
    conn: Connection,
    event_id: int,
    post_ids: Sequence[int],
    *,
    by: str,
    reason: str | None = None,
) -> int:
    """Move the given posts of an event into a new event; returns the new event's id."""
    event_id = resolve(conn, event_id)
    ids = sorted({int(p) for p in post_ids})
    if not ids:
        raise EventError("name the posts to split off (post ids)")
    members = set(
        conn.execute(
            select(EventPost.post_id).where(
                EventPost.event_id == event_id, EventPost.post_id.in_(ids)
            )
        ).scalars()
    )
    missing = [p for p in ids if p not in members]
    if missing:
        raise EventError(f"post {missing[0]} is not in event {event_id}")
    total = _event(conn, event_id).posts
    if len(ids) >= total:
        raise EventError("a split must leave at least one post in the event")
    top = conn.execute(text("SELECT max(id) FROM events")).scalar() or 0
    now = utc_now()
    first = conn.execute(
        text(
            f"SELECT id, source_id, published_at FROM posts WHERE id IN ({','.join(map(str, ids))}) ORDER BY published_at, id LIMIT 1"
        )
    ).first()
    new_id = top + 1
    conn.execute(
        insert(Event).values(
            id=new_id,
            title=_event(conn, event_id).title,
            summary="",
            status="open",
            first_post_id=first[0],
            first_source_id=first[1],
            first_seen_at=first[2] if isinstance(first[2], datetime) else None,
            posts=len(ids),
            profiled_posts=0,
            created_at=now,
            updated_at=now,
        )
    )
    conn.execute(
        update(EventPost)
        .where(EventPost.post_id.in_(ids))
        .values(event_id=new_id, joined_by="manual")
    )
    conn.execute(
        update(Event)
        .where(Event.id == event_id)
        .values(posts=Event.posts - len(ids), profiled_at=None, updated_at=now)
    )
    _record(conn, "split", event_id, other_event_id=new_id, post_ids=ids, reason=reason, by=by)
    return new_id


def override_grade(
    conn: Connection,
    event_id: int,
    level: str,
    *,
    reason: str,
    by: str,
    on_level: Callable[[Connection, int, str | None, str], None] | None = None,
) -> dict[str, Any]:
    """Set an event's level by hand; the reason is required and kept in the history."""
    event_id = resolve(conn, event_id)
    try:
        lvl = Level(_level_name(level))
    except ValueError as exc:
        raise EventError(
            f"unknown level {level!r}: use general, serious, major, critical "
            "(一般, 较大, 重大, 特大 or IV, III, II, I)"
        ) from exc
    if not reason or not reason.strip():
        raise EventError("an override needs a reason (--reason)")
    row = _event(conn, event_id)
    state = GradeState.model_validate(row.grade_state) if row.grade_state else None
    now = utc_now()
    new = apply_override(state, lvl, reason, by, now)
    grade = dict(row.grade or {})
    grade.update(level=str(lvl), level_zh=lvl.zh, roman=lvl.roman)
    grade["override"] = {"level": str(lvl), "reason": reason, "by": by, "at": now.isoformat()}
    conn.execute(
        update(Event)
        .where(Event.id == event_id)
        .values(
            level=str(lvl), grade=grade, grade_state=new.model_dump(mode="json"), updated_at=now
        )
    )
    conn.execute(
        insert(EventGrade).values(
            event_id=event_id,
            graded_at=now,
            level=str(lvl),
            score=row.level_score,
            overridden=True,
            reason=reason,
            decided_by=by,
            explanation=grade,
        )
    )
    _record(conn, "override", event_id, level=str(lvl), reason=reason, by=by)
    if on_level is not None and row.level != str(lvl):
        on_level(conn, event_id, row.level, str(lvl))
    return grade


def clear_grade_override(
    conn: Connection, event_id: int, *, by: str, reason: str | None = None
) -> None:
    """Let the computed level show again (the override stays in the history)."""
    event_id = resolve(conn, event_id)
    row = _event(conn, event_id)
    if not row.grade_state or not row.grade_state.get("override"):
        raise EventError(f"event {event_id} has no override")
    state = clear_override(GradeState.model_validate(row.grade_state), by, reason or "")
    now = utc_now()
    conn.execute(
        update(Event)
        .where(Event.id == event_id)
        .values(
            level=str(state.level),
            grade_state=state.model_dump(mode="json"),
            profiled_at=None,
            updated_at=now,
        )
    )
    conn.execute(
        insert(EventGrade).values(
            event_id=event_id,
            graded_at=now,
            level=str(state.level),
            score=row.level_score,
            overridden=False,
            reason=reason,
            decided_by=by,
        )
    )
    _record(conn, "clear_override", event_id, reason=reason, by=by)


_LEVEL_ALIASES = {
    "一般": "general", "iv": "general", "4": "general",
    "较大": "serious", "iii": "serious", "3": "serious",
    "重大": "major", "ii": "major", "2": "major",
    "特大": "critical", "i": "critical", "1": "critical",
}  # fmt: skip


def _level_name(value: str) -> str:
    v = value.strip().lower()
    return _LEVEL_ALIASES.get(v, v)


def _record(
    conn: Connection,
    kind: str,
    event_id: int,
    *,
    other_event_id: int | None = None,
    post_ids: list[int] | None = None,
    level: str | None = None,
    reason: str | None,
    by: str,
) -> None:
    conn.execute(
        insert(EventDecision).values(
            kind=kind,
            event_id=event_id,
            other_event_id=other_event_id,
            post_ids=post_ids,
            level=level,
            reason=reason,
            decided_by=by,
            decided_at=utc_now(),
        )
    )
    from tingfeng import audit

    # Merges, splits and grade overrides are decisions people answer for: into the audit log.
    audit.record(
        conn, audit.Actor(None, by), f"event.{kind}", f"event:{event_id}",
        {"other_event_id": other_event_id, "post_ids": post_ids, "level": level,
         "reason": reason},
    )  # fmt: skip


def pending_decisions(conn: Connection, after_id: int) -> list[Any]:
    """Merge and split decisions newer than `after_id`, oldest first."""
    return list(
        conn.execute(
            select(EventDecision)
            .where(EventDecision.id > after_id, EventDecision.kind.in_(("merge", "split")))
            .order_by(EventDecision.id)
        ).all()
    )


def last_decision_id(conn: Connection) -> int:
    return int(conn.execute(text("SELECT coalesce(max(id), 0) FROM event_decisions")).scalar())
