"""Hot mode while an event is hot: its sources are polled at their hot interval.

An event turns hot when its level rises to `hot_mode_level` or above, or when it spikes (more
posts in an hour than its baseline). The polled sources (not push, lead or import) that
carried its newest posts then go into hot mode for `hot_mode_minutes`, so follow-ups, official
statements and comments are collected within a minute instead of at the usual interval. A
source still hot for half that time or more is left as it is, as are disabled sources and
those whose hot interval is no shorter than their interval. Each switch is in the
audit log, by the system. `tingfeng source hot` does the same by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from tingfeng.collect.scheduler import PASSIVE_KINDS
from tingfeng.collect.sources import set_hot_mode
from tingfeng.db.models import Post, Source
from tingfeng.events.grading import level_rank
from tingfeng.events.service import newest_post_ids
from tingfeng.settings import Settings

log = logging.getLogger(__name__)

# The event's newest posts whose sources are heated: enough for any event, bounded for huge ones.
NEWEST_POSTS = 2000


def heat_event_sources(conn: Connection, event_id: int, minutes: int, now: datetime) -> list[int]:
    """Put the polled sources of the event's newest posts into hot mode for `minutes`; the ids
    of the sources switched."""
    if minutes <= 0:
        return []
    newest = newest_post_ids(event_id, NEWEST_POSTS)
    source_ids = select(Post.source_id).where(Post.id.in_(newest)).distinct()
    rows = conn.execute(
        select(Source.id, Source.hot_until).where(
            Source.id.in_(source_ids),
            Source.kind.not_in(PASSIVE_KINDS),
            Source.enabled.is_(True),
            # Hot mode changes nothing for a source whose hot interval is no shorter.
            Source.hot_interval_s < Source.interval_s,
        )
    ).all()
    # A source hot for at least half as long again is left alone: a busy event's every rise
    # would otherwise re-switch it (and write to the audit log) each time.
    enough = now + timedelta(minutes=minutes / 2)
    switched = []
    for row in rows:
        if row.hot_until is not None and row.hot_until >= enough:
            continue
        set_hot_mode(conn, row.id, minutes, now=now)
        switched.append(row.id)
    if switched:
        log.info("event %s is hot: sources %s polled at their hot interval for %d min",
                 event_id, switched, minutes)  # fmt: skip
    return switched


def on_level(
    conn: Connection, settings: Settings, event_id: int, old: str | None, new: str, now: datetime
) -> list[int]:
    """Heat the event's sources when its level rises to `hot_mode_level` or above."""
    if level_rank(new) < level_rank(settings.hot_mode_level) or level_rank(new) <= level_rank(old):
        return []
    return heat_event_sources(conn, event_id, settings.hot_mode_minutes, now)


def on_spikes(
    conn: Connection, settings: Settings, series: Iterable[str], now: datetime
) -> list[int]:
    """Heat the sources of every event among the spiking series ("event:ID")."""
    switched: list[int] = []
    for name in dict.fromkeys(series):
        kind, _, ident = name.partition(":")
        if kind == "event" and ident.isdigit():
            switched += heat_event_sources(conn, int(ident), settings.hot_mode_minutes, now)
    return switched
