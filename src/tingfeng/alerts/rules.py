"""Alert rules: the conditions a rule puts on what happens, and the signals they are tested on.

Three kinds of signal reach the rules:
- a post as it is stored (with its reading, the topics it matched, its event and that event's
  level, whether it started a new event);
- an event whose level rose (after grading, or a person's override);
- a spike of a topic's or an event's volume.

All conditions given must hold (AND); several rules give OR; the `query` condition takes the
topic language (tingfeng.topics), so keywords and fields combine freely with AND/OR/NOT.
Conditions about a single post (polarity, emotion, keywords...) only apply to post signals; a
rule that has them never fires on a level change or a spike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tingfeng.events.grading import Level
from tingfeng.problems import ProblemsError
from tingfeng.topics.matcher import TopicDoc, evaluate
from tingfeng.topics.syntax import Node, parse_query

POLARITIES = ("positive", "neutral", "negative")
EMOTIONS = ("neutral", "angry", "happy", "sad", "fear", "surprise")
# Conditions that need a post: a rule using any of them is a post rule.
POST_ONLY = (
    "query",
    "polarities",
    "emotions",
    "categories",
    "regions",
    "source_ids",
    "tiers",
    "needs_verification",
    "new_event",
)


class RuleError(ProblemsError):
    """A rule could not be saved; the message says which part is wrong and how to fix it."""


class Conditions(BaseModel):
    """What must be true for a rule to fire. Empty lists mean "any"."""

    model_config = ConfigDict(extra="forbid")

    topic_ids: list[int] = Field(default_factory=list)  # matched one of these topics
    query: str | None = Field(None, max_length=4000)  # the topic language, on the post
    polarities: list[str] = Field(default_factory=list)
    emotions: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)  # category slugs
    regions: list[str] = Field(default_factory=list)  # division codes; sub-divisions match
    source_ids: list[int] = Field(default_factory=list)
    tiers: list[str] = Field(default_factory=list)  # media tiers of the source
    needs_verification: bool | None = None
    min_level: Level | None = None  # the event's level is at least this
    min_posts: int = Field(0, ge=0)  # the event has at least this many posts
    new_event: bool = False  # the post started a new event
    level_rises: bool = False  # fires when an event's level rises (to min_level or above)
    spike: bool = False  # fires on a spike of a topic or event

    @field_validator("polarities")
    @classmethod
    def _polarities(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in POLARITIES]
        if bad:
            raise ValueError(f"unknown polarity {bad[0]!r}: use {', '.join(POLARITIES)}")
        return v

    @field_validator("emotions")
    @classmethod
    def _emotions(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in EMOTIONS]
        if bad:
            raise ValueError(f"unknown emotion {bad[0]!r}: use {', '.join(EMOTIONS)}")
        return v

    @field_validator("query")
    @classmethod
    def _query(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        parse_query(v)  # QuerySyntaxError (a ValueError) names the position
        return v.strip()

    @property
    def kind(self) -> Literal["post", "level", "spike"]:
        if self.spike:
            return "spike"
        if self.level_rises:
            return "level"
        return "post"

    def check(self) -> None:
        used = [name for name in POST_ONLY if getattr(self, name) not in (None, False, [], "")]
        if self.spike and self.level_rises:
            raise RuleError("A rule fires on spikes or on level rises, not both: make two rules.")
        if self.kind != "post" and used:
            raise RuleError(
                f"{', '.join(used)} apply to single posts, not to "
                f"{'spikes' if self.spike else 'level rises'}: make a separate rule for them."
            )

    @cached_property
    def parsed(self) -> Node | None:
        return parse_query(self.query) if self.query else None


def parse_conditions(value: dict[str, Any] | None) -> Conditions:
    try:
        conditions = Conditions.model_validate(value or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "conditions"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise RuleError(f"Condition {where}: {message}") from exc
    conditions.check()
    return conditions


@dataclass
class PostSignal:
    """A post as it is stored, with what the pipeline found in it."""

    post_id: int
    source_id: int
    title: str
    text: str
    url: str | None
    published_at: datetime | None
    tier: str | None = None
    polarity: str | None = None
    emotion: str | None = None
    categories: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()  # division codes
    needs_verification: bool = False
    topic_ids: frozenset[int] = frozenset()
    event_id: int | None = None
    event_level: str | None = None
    event_posts: int = 0
    event_title: str | None = None
    new_event: bool = False
    doc: TopicDoc | None = None  # for the `query` condition


@dataclass
class LevelSignal:
    """An event whose level rose from `old` to `new`."""

    event_id: int
    old: str | None
    new: str
    title: str
    summary: str
    posts: int
    url: str | None
    topic_ids: frozenset[int] = frozenset()


@dataclass
class SpikeSignal:
    """An hour in which a topic's or an event's volume was unusual."""

    series: str  # topic:3, event:17
    hour: datetime
    count: int
    expected: float
    ratio: float
    title: str
    topic_id: int | None = None
    event_id: int | None = None
    event_level: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _at_least(level: str | None, floor: Level) -> bool:
    if level is None:
        return False
    try:
        return Level(level).rank >= floor.rank
    except ValueError:
        return False


def _region_ok(wanted: list[str], have: frozenset[str]) -> bool:
    # A post's regions include their ancestors (Reading.labels), so a rule on 四川省 (510000)
    # catches posts about 成都市 (510100) and 武侯区 (510107).
    return not have.isdisjoint(wanted)


def post_reasons(c: Conditions, s: PostSignal) -> dict[str, Any] | None:
    """Why the rule fires on this post (the values that met each condition), or None."""
    why: dict[str, Any] = {}
    if c.topic_ids:
        hit = sorted(s.topic_ids.intersection(c.topic_ids))
        if not hit:
            return None
        why["topics"] = hit
    if c.source_ids:
        if s.source_id not in c.source_ids:
            return None
        why["source"] = s.source_id
    if c.tiers:
        if s.tier not in c.tiers:
            return None
        why["tier"] = s.tier
    if c.polarities:
        if s.polarity not in c.polarities:
            return None
        why["polarity"] = s.polarity
    if c.emotions:
        if s.emotion not in c.emotions:
            return None
        why["emotion"] = s.emotion
    if c.categories:
        hit_c = sorted(s.categories.intersection(c.categories))
        if not hit_c:
            return None
        why["categories"] = hit_c
    if c.regions:
        if not _region_ok(c.regions, s.regions):
            return None
        why["regions"] = sorted(s.regions)
    if c.needs_verification is not None:
        if s.needs_verification != c.needs_verification:
            return None
        why["needs_verification"] = s.needs_verification
    if c.new_event:
        if not s.new_event:
            return None
        why["new_event"] = s.event_id
    if c.min_level is not None:
        if not _at_least(s.event_level, c.min_level):
            return None
        why["level"] = s.event_level
    if c.min_posts:
        if s.event_posts < c.min_posts:
            return None
        why["event_posts"] = s.event_posts
    if c.parsed is not None:
        if s.doc is None or not evaluate(c.parsed, s.doc):
            return None
        why["query"] = c.query
    return why


def level_reasons(c: Conditions, s: LevelSignal) -> dict[str, Any] | None:
    if c.kind == "spike" or (c.kind == "post" and c.min_level is None):
        return None  # a plain post rule does not look at level changes
    if c.kind == "post" and any(getattr(c, n) not in (None, False, [], "") for n in POST_ONLY):
        return None
    floor = c.min_level or Level.general
    if not _at_least(s.new, floor):
        return None
    if s.old is not None and _at_least(s.old, floor) and c.kind == "post":
        return None  # a min_level rule fires when the event reaches the level, not above it
    why: dict[str, Any] = {"level": s.new, "previous_level": s.old}
    if c.topic_ids:
        hit = sorted(s.topic_ids.intersection(c.topic_ids))
        if not hit:
            return None
        why["topics"] = hit
    if c.min_posts:
        if s.posts < c.min_posts:
            return None
        why["event_posts"] = s.posts
    return why


def spike_reasons(c: Conditions, s: SpikeSignal) -> dict[str, Any] | None:
    if c.kind != "spike":
        return None
    why: dict[str, Any] = {
        "spike": s.series,
        "hour": s.hour.isoformat(),
        "count": s.count,
        "expected": round(s.expected, 2),
        "ratio": round(s.ratio, 2),
    }
    if c.topic_ids:
        if s.topic_id is None or s.topic_id not in c.topic_ids:
            return None
        why["topics"] = [s.topic_id]
    if c.min_level is not None:
        if not _at_least(s.event_level, c.min_level):
            return None
        why["level"] = s.event_level
    return why
