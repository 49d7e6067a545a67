"""Spread paths: repost trees from parent links, on hand-built trees and a real CED cascade."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tingfeng.events.spread import SpreadNode, cascade_nodes, spread_path

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
CED = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "rumor" / "ced" / "cascades.jsonl.gz"
)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_hand_built_tree() -> None:
    #   root ── a ── c ── e
    #        │    └─ d
    #        └─ b
    nodes = [
        SpreadNode("a", None, "甲", at(1), 100),
        SpreadNode("b", "root", "乙", at(2), 5),
        SpreadNode("c", "a", "丙", at(3), 9_000),
        SpreadNode("d", "a", "丁", at(5), 1),
        SpreadNode("e", "c", "戊", at(10), None),
    ]
    s = spread_path("root", nodes, root_time=T0)
    assert (s.size, s.depth, s.breadth, s.orphans) == (6, 3, 2, 0)
    assert [(g.depth, g.count) for g in s.generations] == [(1, 2), (2, 2), (3, 1)]
    assert [g.first_time_s for g in s.generations] == [60.0, 180.0, 600.0]
    assert [g.median_time_s for g in s.generations] == [90.0, 240.0, 600.0]
    assert [(a.key, a.direct_reposts, a.further_reposts) for a in s.amplifiers] == [
        ("a", 2, 3),
        ("c", 1, 1),
    ]
    assert s.amplifiers[0].author == "甲" and s.amplifiers[1].reach == 9_000
    assert set(s.edges) == {("root", "a"), ("root", "b"), ("a", "c"), ("a", "d"), ("c", "e")}
    assert s.edges[:2] == [("root", "a"), ("root", "b")]  # breadth-first
    # Goel et al.: the 15 pairs of this tree are 31 steps apart in all
    assert s.structural_virality == pytest.approx(31 / 15)


def test_structural_virality_of_star_and_chain() -> None:
    n = 50
    star = spread_path(0, [SpreadNode(i, 0) for i in range(1, n)])
    assert star.structural_virality == pytest.approx(2 * (n - 1) / n)
    assert (star.depth, star.breadth) == (1, n - 1)
    chain = spread_path(0, [SpreadNode(i, i - 1) for i in range(1, n)])
    assert chain.structural_virality == pytest.approx((n + 1) / 3)
    assert (chain.depth, chain.breadth) == (n - 1, 1)
    alone = spread_path("x", [])
    assert (alone.size, alone.depth, alone.breadth, alone.structural_virality) == (1, 0, 0, None)


def test_bad_links_are_repaired_and_counted() -> None:
    nodes = [
        SpreadNode("a", None, time=at(1)),
        SpreadNode("a", "zzz", time=at(99)),  # duplicate key: the first record wins
        SpreadNode("b", "missing", time=at(2)),  # orphan
        SpreadNode("c", "c", time=at(3)),  # self-parent
        SpreadNode("x", "y", time=at(7)),  # x <-> y cycle, with z hanging from y
        SpreadNode("y", "x", time=at(6)),
        SpreadNode("z", "y", time=at(8)),
        SpreadNode("early", "a", time=at(0.5)),  # timed before its parent
        SpreadNode("root", None, author="源", time=T0, reach=12_345),  # the root's own record
    ]
    s = spread_path("root", nodes)
    assert s.size == 8  # root + a b c x y z early
    assert (s.orphans, s.duplicates, s.self_parents, s.cycles_broken) == (1, 1, 1, 1)
    assert s.time_inversions == 1
    assert s.root_reach == 12_345 and s.root_author == "源" and s.time_origin == T0
    parent = {child: p for p, child in s.edges}
    assert parent["b"] == parent["c"] == "root"
    assert parent["y"] == "root" and parent["x"] == "y"  # cut at the earliest member (y)
    assert parent["z"] == "y" and parent["a"] == "root"
    assert s.depth_of["z"] == 2


def test_long_chain_and_big_cycle_without_recursion() -> None:
    n = 100_000
    chain = spread_path(0, (SpreadNode(i, i - 1) for i in range(1, n + 1)), max_edges=10)
    assert chain.size == n + 1 and chain.depth == n and chain.breadth == 1
    assert chain.amplifiers[0].further_reposts == n - 1
    assert len(chain.edges) == 10 and chain.edges_truncated
    # a 100k-member loop that never reaches the root
    loop = [SpreadNode(i, (i + 1) % n) for i in range(n)]
    s = spread_path("root", loop, max_edges=0)
    assert s.cycles_broken == 1 and s.size == n + 1 and s.depth == n


def test_missing_times() -> None:
    nodes = [
        SpreadNode("a", None),
        SpreadNode("b", "a", time=at(4)),
        SpreadNode("c", "a", time=at(2)),
    ]
    s = spread_path("r", nodes)  # no root time: the earliest known time is the origin
    assert s.time_origin == at(2)
    assert s.generations[0].first_time_s is None
    assert s.generations[1].first_time_s == 0.0 and s.generations[1].median_time_s == 60.0


@pytest.mark.skipif(not CED.exists(), reason="shared CED data set not present")
def test_real_ced_cascade() -> None:
    with gzip.open(CED, "rt", encoding="utf-8") as handle:
        record = json.loads(handle.readline())
    root, root_time, nodes = cascade_nodes(record)
    s = spread_path(root, nodes, root_time=root_time)
    reposts = record["reposts"]
    mids = {r["mid"] for r in reposts}
    assert s.size == len(mids) + 1 and s.orphans == 0 and s.cycles_broken == 0
    direct = sum(1 for r in reposts if not r["parent"])
    assert s.generations[0].count == direct == s.breadth
    # depth checked against a plain walk up the parent links
    parent = {r["mid"]: r["parent"] for r in reposts}

    def depth(mid: str) -> int:
        d = 1
        while parent[mid]:
            mid, d = parent[mid], d + 1
        return d

    assert s.depth == max(depth(m) for m in mids)
    # the top amplifier drew as many further reposts as it has descendants
    top = s.amplifiers[0]
    kids: dict[str, list[str]] = {}
    for m, p in parent.items():
        kids.setdefault(p, []).append(m)
    stack, count = list(kids.get(top.key, ())), 0
    while stack:
        count += 1
        stack.extend(kids.get(stack.pop(), ()))
    assert top.further_reposts == count == max(a.further_reposts for a in s.amplifiers)
    assert root_time is not None and s.root_reach == record["user"]["followers"]
    assert s.generations[0].first_time_s is not None and s.generations[0].first_time_s >= 0
    assert s.to_dict()["root"] == root


def test_cascade_dates_without_a_year() -> None:
    record = {
        "id": "r1",
        "time": int(datetime(2012, 12, 30, 12, 0, tzinfo=UTC).timestamp()),
        "user": {"followers": 10},
        "reposts": [
            {"mid": "m1", "parent": "", "uid": "u1", "date": "01月02日 09:30"},
            {"mid": "m2", "parent": "m1", "uid": "u2", "date": "2012-12-31 10:00:00"},
        ],
    }
    root, root_time, nodes = cascade_nodes(record)
    times = {n.key: n.time for n in nodes}
    assert times["m1"] is not None and times["m1"].year == 2013 and times["m1"].hour == 9
    assert times["m2"] is not None and times["m2"].utcoffset() == timedelta(hours=8)
    s = spread_path(root, nodes, root_time=root_time)
    assert s.time_inversions == 1  # m2 is dated before m1, which it reposts
