"""Spread paths (传播路径): the repost tree of an event or a cascade, and what shaped it.

Built from repost links (each repost names the post it reposted). Everything is iterative, so
a 100,000-generation chain is as safe as a star. Bad links are repaired and counted, never
fatal: a repost of an unknown post (an orphan) and a self-parent hang from the root, a cycle is
cut at its earliest member, and a repeated key keeps its first record.

Amplifiers are reposts ranked by how many further reposts they drew (public repost counts and
public follower counts only): the map says which posts carried the story, not who people are.
See docs/events-spread-grading.md.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

__all__ = [
    "Amplifier",
    "Generation",
    "Spread",
    "SpreadNode",
    "cascade_nodes",
    "spread_path",
]

Key = Hashable

DEFAULT_TOP = 10
DEFAULT_MAX_EDGES = 5_000


@dataclass(slots=True)
class SpreadNode:
    """One post in a repost tree. `parent` None: a direct repost of the root."""

    key: Key
    parent: Key | None = None
    author: str | None = None  # public byline, may be pseudonymised
    time: datetime | None = None
    reach: int | None = None  # public follower count, when known


@dataclass(slots=True, frozen=True)
class Generation:
    """Reposts at one distance from the root (depth 1 = direct reposts)."""

    depth: int
    count: int
    first_time_s: float | None  # seconds from the time origin to this generation's first post
    median_time_s: float | None


@dataclass(slots=True, frozen=True)
class Amplifier:
    """A repost that drew further reposts."""

    key: Key
    author: str | None
    direct_reposts: int
    further_reposts: int  # all descendants, direct ones included
    reach: int | None
    depth: int


@dataclass(slots=True)
class Spread:
    root: Key
    size: int  # posts in the tree, root included
    depth: int  # deepest generation (0: the root alone)
    breadth: int  # most posts in one generation (0: no reposts)
    generations: list[Generation]
    orphans: int  # reposts of an unknown post, hung from the root
    amplifiers: list[Amplifier]
    structural_virality: float | None  # Goel et al. mean path distance; None below 2 posts
    edges: list[tuple[Key, Key]]  # (parent, child) in breadth-first order, capped
    edges_truncated: bool
    duplicates: int = 0  # repeated keys dropped (the first record wins)
    self_parents: int = 0  # reposts naming themselves as parent, hung from the root
    cycles_broken: int = 0  # parent cycles cut (the earliest member hung from the root)
    time_inversions: int = 0  # reposts timed before the post they repost (clock skew)
    time_origin: datetime | None = None  # the root's time, else the earliest known time
    root_reach: int | None = None
    root_author: str | None = None
    depth_of: dict[Key, int] = field(default_factory=dict, repr=False)

    def to_dict(self, *, edges: bool = False) -> dict[str, Any]:
        """A JSON-friendly summary (keys as strings); `edges=True` adds the drawing edges."""
        out: dict[str, Any] = {
            "root": str(self.root),
            "size": self.size,
            "depth": self.depth,
            "breadth": self.breadth,
            "orphans": self.orphans,
            "duplicates": self.duplicates,
            "self_parents": self.self_parents,
            "cycles_broken": self.cycles_broken,
            "time_inversions": self.time_inversions,
            "structural_virality": self.structural_virality,
            "time_origin": self.time_origin.isoformat() if self.time_origin else None,
            "generations": [
                {
                    "depth": g.depth,
                    "count": g.count,
                    "first_time_s": g.first_time_s,
                    "median_time_s": g.median_time_s,
                }
                for g in self.generations
            ],
            "amplifiers": [
                {
                    "key": str(a.key),
                    "author": a.author,
                    "direct_reposts": a.direct_reposts,
                    "further_reposts": a.further_reposts,
                    "reach": a.reach,
                    "depth": a.depth,
                }
                for a in self.amplifiers
            ],
            "edges_truncated": self.edges_truncated,
        }
        if edges:
            out["edges"] = [[str(p), str(c)] for p, c in self.edges]
        return out


def spread_path(
    root: Key,
    nodes: Iterable[SpreadNode],
    *,
    root_time: datetime | None = None,
    top: int = DEFAULT_TOP,
    max_edges: int = DEFAULT_MAX_EDGES,
) -> Spread:
    """The repost tree under `root` built from `nodes` (any order; a node keyed `root`, if
    present, only lends the root its author, time and reach)."""
    root_node = SpreadNode(root, None, time=root_time)
    records: dict[Key, SpreadNode] = {}
    duplicates = 0
    for node in nodes:
        if node.key == root:
            if root_time is None and node.time is not None:
                root_node.time = node.time
            root_node.author = root_node.author or node.author
            if root_node.reach is None:
                root_node.reach = node.reach
            continue
        if node.key in records:
            duplicates += 1
            continue
        records[node.key] = node

    # Parent of every repost, with bad links repaired towards the root.
    parent: dict[Key, Key] = {}
    orphans = self_parents = 0
    for key, node in records.items():
        p = node.parent
        if p is None or p == root:
            parent[key] = root
        elif p == key:
            self_parents += 1
            parent[key] = root
        elif p in records:
            parent[key] = p
        else:
            orphans += 1
            parent[key] = root
    cycles_broken = _break_cycles(root, parent, records)

    children: dict[Key, list[Key]] = {}
    for key, p in parent.items():
        children.setdefault(p, []).append(key)

    # Breadth-first from the root: every repost is reachable now that cycles are cut.
    order: list[Key] = [root]
    depth_of: dict[Key, int] = {root: 0}
    head = 0
    while head < len(order):
        key = order[head]
        head += 1
        d = depth_of[key] + 1
        for child in children.get(key, ()):
            depth_of[child] = d
            order.append(child)
    size = len(order)

    # Subtree sizes bottom-up: reverse breadth-first order visits children before parents.
    below: dict[Key, int] = dict.fromkeys(order, 1)
    for key in reversed(order[1:]):
        below[parent[key]] += below[key]

    origin = root_node.time
    if origin is None:
        known = [n.time for n in records.values() if n.time is not None]
        origin = min(known, key=_sortable) if known else None

    by_depth: dict[int, list[float]] = {}
    counts: dict[int, int] = {}
    inversions = 0
    for key in order[1:]:
        d = depth_of[key]
        counts[d] = counts.get(d, 0) + 1
        t = records[key].time
        if t is None:
            continue
        if origin is not None:
            by_depth.setdefault(d, []).append(_seconds(origin, t))
        pt = root_node.time if parent[key] == root else records[parent[key]].time
        if pt is not None and _seconds(pt, t) < 0:
            inversions += 1
    generations = [
        Generation(
            depth=d,
            count=counts[d],
            first_time_s=min(by_depth[d]) if d in by_depth else None,
            median_time_s=statistics.median(by_depth[d]) if d in by_depth else None,
        )
        for d in sorted(counts)
    ]

    ranked = sorted(
        (k for k in order[1:] if below[k] > 1),
        key=lambda k: (-below[k], -len(children.get(k, ())), -(records[k].reach or 0)),
    )[: max(top, 0)]
    amplifiers = [
        Amplifier(
            key=k,
            author=records[k].author,
            direct_reposts=len(children.get(k, ())),
            further_reposts=below[k] - 1,
            reach=records[k].reach,
            depth=depth_of[k],
        )
        for k in ranked
    ]

    # Goel et al. (2016): mean distance over ordered pairs = 2 W / (n (n - 1)), where the
    # Wiener index W of a tree sums s (n - s) over its edges (s: posts below the edge).
    virality = None
    if size > 1:
        wiener = math.fsum(below[k] * (size - below[k]) for k in order[1:])
        virality = 2.0 * wiener / (size * (size - 1))

    edges = [(parent[k], k) for k in order[1 : 1 + max(max_edges, 0)]]
    return Spread(
        root=root,
        size=size,
        depth=max(counts, default=0),
        breadth=max(counts.values(), default=0),
        generations=generations,
        orphans=orphans,
        amplifiers=amplifiers,
        structural_virality=virality,
        edges=edges,
        edges_truncated=size - 1 > len(edges),
        duplicates=duplicates,
        self_parents=self_parents,
        cycles_broken=cycles_broken,
        time_inversions=inversions,
        time_origin=origin,
        root_reach=root_node.reach,
        root_author=root_node.author,
        depth_of=depth_of,
    )


def _break_cycles(root: Key, parent: dict[Key, Key], records: Mapping[Key, SpreadNode]) -> int:
    """Cut every parent cycle (in place) by hanging its earliest member from the root.

    Each repost has one parent, so a walk up the parents either reaches the root or loops.
    Walks are coloured by their starting key: meeting a key of the current walk is a loop,
    meeting a finished key is not, so every key is walked once (linear time).
    """
    state: dict[Key, Key] = {root: root}  # key -> walk it was first seen on (root: done)
    done: set[Key] = {root}
    index: dict[Key, int] = {}
    broken = 0
    for start in records:
        if start in done:
            continue
        path: list[Key] = []
        key = start
        while key not in done and key not in state:
            state[key] = start
            path.append(key)
            key = parent[key]
        if key not in done and state.get(key) == start:
            loop = path[path.index(key) :]
            if not index:
                index = {k: i for i, k in enumerate(records)}
            first = min(loop, key=lambda k: (_sortable(records[k].time), index[k]))
            parent[first] = root
            broken += 1
        done.update(path)
    return broken


def _aware(t: datetime) -> datetime:
    # Naive times are taken as UTC so naive and aware inputs still compare.
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _sortable(t: datetime | None) -> datetime:
    return _aware(t) if t is not None else datetime.max.replace(tzinfo=UTC)


def _seconds(a: datetime, b: datetime) -> float:
    return (_aware(b) - _aware(a)).total_seconds()


# --- the Weibo repost-export shape (CED records, importers writing the same shape) -------------

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
_MONTH_DAY = re.compile(r"^(\d{1,2})月(\d{1,2})日\s+(\d{1,2}):(\d{2})$")


def cascade_nodes(record: Mapping[str, Any]) -> tuple[str, datetime | None, list[SpreadNode]]:
    """Root key, root time and repost nodes of one cascade record.

    Record: `{"id", "time" (unix s or Weibo's API form), "user": {"followers"}, "reposts": [{"mid", "parent", "uid",
    "date"}]}`; `parent` "" is a direct repost of the source. Dates are Beijing time; Weibo's
    short form "MM月DD日 HH:MM" has no year, so it takes the root's year (the next year when
    that would put it before the root).
    """
    root = str(record["id"])
    root_time = _root_time(record.get("time"))
    nodes = [SpreadNode(root, None, reach=_followers(record.get("user")), time=root_time)]
    for r in record.get("reposts") or ():
        nodes.append(
            SpreadNode(
                key=r["mid"],
                parent=r.get("parent") or None,
                author=r.get("uid") or None,
                time=_weibo_date(r.get("date"), root_time),
                reach=_followers(r.get("user")),
            )
        )
    return root, root_time, nodes


def _root_time(value: Any) -> datetime | None:
    """Unix seconds, or Weibo's API form "Sat Jun 29 12:40:09 +0800 2013" (87 CED records)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value, UTC).astimezone(CHINA_TZ)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isdigit():
            return datetime.fromtimestamp(int(text), UTC).astimezone(CHINA_TZ)
        try:
            return datetime.strptime(text, "%a %b %d %H:%M:%S %z %Y")
        except ValueError:
            return None
    return None


def _followers(user: Any) -> int | None:
    if isinstance(user, Mapping):
        value = user.get("followers")
        if isinstance(value, int) and value >= 0:
            return value
    return None


def _weibo_date(text: str | None, root_time: datetime | None) -> datetime | None:
    if not text:
        return None
    try:
        # fromisoformat reads "YYYY-mm-dd HH:MM:SS" about ten times faster than strptime.
        t = datetime.fromisoformat(text)
        return t if t.tzinfo is not None else t.replace(tzinfo=CHINA_TZ)
    except ValueError:
        pass
    m = _MONTH_DAY.match(text.strip())
    if m is None or root_time is None:
        return None
    month, day, hour, minute = (int(g) for g in m.groups())
    try:
        t = datetime(root_time.year, month, day, hour, minute, tzinfo=CHINA_TZ)
        if t < root_time - timedelta(days=1):
            t = t.replace(year=root_time.year + 1)
    except ValueError:
        return None
    return t
