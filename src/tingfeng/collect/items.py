"""`RawItem`: one item as a connector found it, before analysis.

Every connector yields these; the ingest pipeline turns them into stored posts. Connectors do
not clean, normalise or de-duplicate: that is the pipeline's job, done once for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

POST_KINDS = ("article", "post", "comment", "repost")


@dataclass(slots=True)
class RawItem:
    """A collected item.

    `published_at` may be naive: it is then read in the source's time zone by the pipeline.
    `platform` + `external_id` identify an item across sources (e.g. ``weibo`` + mid), so the
    same item imported twice, through two sources, is still one post. Without a platform the
    external id is scoped to its source. `reposts_of` / `reply_to` hold the external id of the
    parent item on the same platform (or its URL).
    """

    text: str | None = None
    html: str | None = None
    title: str | None = None
    url: str | None = None
    external_id: str | None = None
    platform: str | None = None
    author: str | None = None
    published_at: datetime | None = None
    kind: str = "post"
    lang: str | None = None
    reposts_of: str | None = None
    reply_to: str | None = None
    reposts: int | None = None
    comments: int | None = None
    likes: int | None = None
    views: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ItemError:
    """A row or entry that could not be read; connectors yield it and carry on.

    `where` locates it for a person ("line 1204", "entry 7 of feed"), `message` says what is wrong.
    """

    where: str
    message: str
