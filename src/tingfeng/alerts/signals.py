"""Signals for the rules from what the event stage produced: level rises and spikes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from tingfeng.alerts import outbox
from tingfeng.alerts.engine import AlertStage
from tingfeng.alerts.rules import LevelSignal, SpikeSignal
from tingfeng.collect import hot_mode
from tingfeng.db.models import Event, Post, Topic, TopicMatch
from tingfeng.events.service import newest_post_ids
from tingfeng.settings import Settings


def event_topics(conn: Connection, event_id: int, limit: int = 2000) -> frozenset[int]:
    """The topics an event's posts matched (a sample of its newest posts for big events)."""
    rows = conn.execute(
        select(TopicMatch.topic_id)
        .where(TopicMatch.post_id.in_(newest_post_ids(event_id, limit)))
        .distinct()
    ).scalars()
    return frozenset(rows)


def level_signal(conn: Connection, event_id: int, old: str | None, new: str) -> LevelSignal | None:
    row = conn.execute(
        select(Event.title, Event.summary, Event.posts, Event.first_post_id).where(
            Event.id == event_id
        )
    ).first()
    if row is None:
        return None
    url = None
    if row.first_post_id is not None:
        url = conn.execute(select(Post.url).where(Post.id == row.first_post_id)).scalar()
    return LevelSignal(
        event_id=event_id,
        old=old,
        new=new,
        title=row.title or "",
        summary=row.summary or "",
        posts=row.posts or 0,
        url=url,
        topic_ids=event_topics(conn, event_id),
    )


def level_listener(
    settings: Settings, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Callable[[Connection, int, str | None, str], None]:
    """What to pass as `on_level` to event refreshes and grade overrides: alerts, and hot mode
    for the event's sources when it rises far enough (`collect.hot_mode`)."""
    stage = AlertStage(None, settings)

    def on_level(conn: Connection, event_id: int, old: str | None, new: str) -> None:
        signal = level_signal(conn, event_id, old, new)
        if signal is None:
            return
        at = now()
        hot_mode.on_level(conn, settings, event_id, old, new, at)
        result = stage.on_level(conn, signal, at)
        if result.deliveries:
            # Before the commit: the dispatcher may look too early and then finds these at its
            # next poll (outbox_poll_s), which is soon enough for a level change.
            outbox.notify()

    return on_level


def spike_signals(conn: Connection, spikes: Iterable[Any]) -> list[SpikeSignal]:
    """SpikeSignals for detected spikes (tingfeng.events.spikes.Spike), with readable titles."""
    spikes = list(spikes)
    topic_ids = {int(s.series.split(":")[1]) for s in spikes if s.series.startswith("topic:")}
    event_ids = {int(s.series.split(":")[1]) for s in spikes if s.series.startswith("event:")}
    topics = (
        dict(conn.execute(select(Topic.id, Topic.name).where(Topic.id.in_(topic_ids))).all())
        if topic_ids
        else {}
    )
    events = (
        {
            r.id: r
            for r in conn.execute(
                select(Event.id, Event.title, Event.level).where(Event.id.in_(event_ids))
            ).all()
        }
        if event_ids
        else {}
    )
    out = []
    for s in spikes:
        kind, _, ident = s.series.partition(":")
        if not ident.isdigit():
            continue
        n = int(ident)
        if kind == "topic":
            out.append(
                SpikeSignal(s.series, s.hour, s.count, s.expected, s.ratio,
                            title=f"{topics.get(n, n)}", topic_id=n)
            )  # fmt: skip
        elif kind == "event" and n in events:
            e = events[n]
            out.append(
                SpikeSignal(s.series, s.hour, s.count, s.expected, s.ratio,
                            title=e.title or f"#{n}", event_id=n, event_level=e.level)
            )  # fmt: skip
    return out
