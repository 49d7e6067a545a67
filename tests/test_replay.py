"""Replay: chronological order, speed, gaps, batches, restarts and time shifting, on a clock
the test controls (no sleeping); the real CED file for ordering and (slow) the full index."""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from tingfeng.collect.connectors import replay
from tingfeng.collect.connectors.base import CollectContext, get_connector
from tingfeng.collect.connectors.imports import CHINA_TZ, read_items
from tingfeng.collect.errors import ConfigError
from tingfeng.collect.items import ItemError, RawItem

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CED = SHARED / "rumor" / "ced" / "cascades.jsonl.gz"
needs_ced = pytest.mark.skipif(not CED.is_file(), reason="the shared CED data set is not here")

START = datetime(2030, 1, 1, tzinfo=UTC)
BASE = 1346428800  # 2012-09-01 00:00:00 in Beijing


def _local(offset: int) -> str:
    return datetime.fromtimestamp(BASE + offset, CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def _write_ced(path: Path, cascades: list[dict[str, Any]]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for cascade in cascades:
            out.write(json.dumps(cascade, ensure_ascii=False) + "\n")
    return path


@pytest.fixture
def small_ced(tmp_path: Path) -> Path:
    """Two cascades whose items interleave in time; data seconds after BASE:
    A 0, B 30, a1 60, b1 90, a2 120, then a long quiet stretch, a3 3600."""
    cascades = [
        {"id": "A", "label": "rumor", "text": "post A", "time": BASE, "counts": {"reposts": 3},
         "reposts": [
             {"mid": "a3", "parent": "a1", "uid": "u3", "text": "late", "date": _local(3600)},
             {"mid": "a1", "parent": "", "uid": "u1", "text": "first", "date": _local(60)},
             {"mid": "a2", "parent": "a1", "uid": "u2", "text": "", "date": _local(120)},
         ]},
        {"id": "B", "label": "non-rumor", "text": "post B", "time": BASE + 30, "counts": {},
         "reposts": [{"mid": "b1", "parent": "", "uid": "u4", "text": "b", "date": _local(90)}]},
    ]  # fmt: skip
    return _write_ced(tmp_path / "small.jsonl.gz", cascades)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def at(self, seconds: float) -> datetime:
        self.now = START + timedelta(seconds=seconds)
        return self.now


def _run(
    connector: Any, state: dict[str, Any], clock: Clock, limit: int | None = None
) -> list[RawItem | ItemError]:
    return list(connector.collect(CollectContext(state=state, now=lambda: clock.now, limit=limit)))


def _ids(results: list[RawItem | ItemError]) -> list[str | None]:
    return [r.external_id for r in results if isinstance(r, RawItem)]


def _connector(path: Path, tmp_path: Path, **options: Any) -> Any:
    return get_connector(
        "replay", {"path": str(path), "index_dir": str(tmp_path / "idx"), **options}
    )


def test_replay_order_speed_gaps_and_time_shift(small_ced: Path, tmp_path: Path) -> None:
    connector = _connector(small_ced, tmp_path)  # speed 60, max_gap_s 3
    state: dict[str, Any] = {}
    clock = Clock()
    first = _run(connector, state, clock)
    assert _ids(first) == ["A"]
    post = first[0]
    assert isinstance(post, RawItem)
    assert post.published_at == START  # replayed as if posted now
    assert post.extra["original_time"] == "2012-08-31T16:00:00+00:00"
    assert post.extra["label"] == "rumor" and post.kind == "post"

    clock.at(0.4)
    assert _run(connector, state, clock) == []
    clock.at(1.2)
    batch = _run(connector, state, clock)
    # 30 data seconds at speed 60 are half a wall second.
    assert _ids(batch) == ["B", "a1"]
    assert [r.published_at for r in batch] == [START + timedelta(seconds=s) for s in (0.5, 1.0)]
    a1 = batch[1]
    assert a1.kind == "repost" and a1.reposts_of == "A" and a1.author == "u1"
    assert a1.extra["original_time"] == "2012-09-01T00:01:00"  # naive China time, as in CED

    clock.at(4.0)
    batch = _run(connector, state, clock)
    assert _ids(batch) == ["b1", "a2"]
    assert batch[1].text == "转发微博" and batch[1].reposts_of == "a1"
    # The hour of silence before a3 is cut to max_gap_s = 3 s: due at 2.0 + 3 = 5.0.
    clock.at(4.99)
    assert _run(connector, state, clock) == []
    clock.at(5.0)
    (a3,) = _run(connector, state, clock)
    assert a3.external_id == "a3" and a3.published_at == START + timedelta(seconds=5)
    clock.at(100)
    assert _run(connector, state, clock) == []
    assert state["finished"] is True and state["position"] == 6


def test_replay_batches_and_limit(small_ced: Path, tmp_path: Path) -> None:
    connector = _connector(small_ced, tmp_path, speed=1e6, batch_max=2)
    state: dict[str, Any] = {}
    clock = Clock()
    assert _ids(_run(connector, state, clock)) == ["A"]  # the replay starts now
    clock.at(10)
    assert _ids(_run(connector, state, clock)) == ["B", "a1"]
    assert _ids(_run(connector, state, clock, limit=1)) == ["b1"]
    assert _ids(_run(connector, state, clock)) == ["a2", "a3"]
    assert _run(connector, state, clock) == []


def test_replay_restart_continues_and_long_stop_resumes_live(
    small_ced: Path, tmp_path: Path
) -> None:
    clock = Clock()
    state: dict[str, Any] = {}
    assert _ids(_run(_connector(small_ced, tmp_path), state, clock)) == ["A"]
    # Saved as JSON with the source; a new instance after a short restart goes on exactly.
    state = json.loads(json.dumps(state))
    clock.at(1.2)
    assert _ids(_run(_connector(small_ced, tmp_path), state, clock)) == ["B", "a1"]

    # Stopped for ~17 minutes: rather than a burst of back-dated items, the timeline shifts.
    state = json.loads(json.dumps(state))
    backlog = json.loads(json.dumps(state))
    clock.at(1000)
    resumed = _run(_connector(small_ced, tmp_path), state, clock)
    assert _ids(resumed) == ["b1"]
    assert resumed[0].published_at == START + timedelta(seconds=1000)
    clock.at(1000.5)
    (a2,) = _run(_connector(small_ced, tmp_path), state, clock)
    assert a2.external_id == "a2" and a2.published_at == START + timedelta(seconds=1000.5)

    # max_lag_s = 0 replays the backlog at the original pace instead.
    batch = _run(_connector(small_ced, tmp_path, max_lag_s=0), backlog, clock)
    assert _ids(batch) == ["b1", "a2", "a3"]
    assert [r.published_at for r in batch] == [START + timedelta(seconds=s) for s in (1.5, 2, 5)]


def test_replay_loop_and_start_at(small_ced: Path, tmp_path: Path) -> None:
    clock = Clock()
    state: dict[str, Any] = {}
    connector = _connector(small_ced, tmp_path, speed=1e6, loop=True, batch_max=8)
    assert _ids(_run(connector, state, clock)) == ["A"]
    clock.at(60)
    results = _run(connector, state, clock)
    # The same ids come round again (the store keeps one copy), marked with their round.
    assert _ids(results) == ["B", "a1", "b1", "a2", "a3", "A", "B", "a1"]
    assert "replay_round" not in results[4].extra and results[5].extra["replay_round"] == 1
    # A pause of max_gap_s (3 s) between rounds.
    assert results[5].published_at - results[4].published_at == timedelta(seconds=3)

    # start_at (naive: the data's Beijing time) skips the earlier items, in every round.
    later = _connector(
        small_ced, tmp_path, start_at="2012-09-01 00:01:00", speed=1e6, loop=True, batch_max=5
    )
    later_state: dict[str, Any] = {}
    assert _ids(_run(later, later_state, clock)) == ["a1"]
    clock.at(70)
    assert _ids(_run(later, later_state, clock)) == ["b1", "a2", "a3", "a1", "b1"]


def test_replay_any_format_in_time_order(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    rows = [
        {"id": "x1", "text": "late", "time": "2024-03-05 10:00:00"},  # naive: Beijing, 02:00Z
        {"id": "x2", "text": "early", "time": "2024-03-05T01:00:00Z"},
        {"id": "x3", "text": "no time"},
        {"id": "x4", "text": "middle", "time": 1709602200},  # 01:30Z
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    connector = _connector(path, tmp_path, format="jsonl", speed=1e6, platform="forum")
    clock = Clock()
    state: dict[str, Any] = {}
    results = _run(connector, state, clock)
    clock.at(1)
    results += _run(connector, state, clock)
    assert isinstance(results[0], ItemError) and "has no time" in results[0].message
    assert results[0].where == "item x3"
    assert _ids(results) == ["x2", "x4", "x1"]
    assert results[-1].extra["original_time"] == "2024-03-05T10:00:00"
    assert {r.platform for r in results if isinstance(r, RawItem)} == {"forum"}
    clock.at(5)
    assert _run(connector, state, clock) == []  # errors are reported once


def test_replay_index_is_cached_and_rebuilt_for_a_new_file(
    small_ced: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    state: dict[str, Any] = {}
    _run(_connector(small_ced, tmp_path), state, clock)
    folders = [p for p in (tmp_path / "idx").iterdir()]
    assert len(folders) == 1 and (folders[0] / "data.jsonl").is_file()
    meta = json.loads((folders[0] / "meta.json").read_text())
    assert meta["counts"]["first"] == 6 and meta["kind"] == "ced"

    # A fresh process reads the saved index instead of rebuilding it.
    replay._LOADED.clear()

    def no_build(*_: Any) -> None:
        raise AssertionError("the index was rebuilt")

    monkeypatch.setattr(replay, "_build_ced", no_build)
    clock.at(1.2)
    assert _ids(_run(_connector(small_ced, tmp_path), state, clock)) == ["B", "a1"]
    monkeypatch.undo()

    # A changed file gets a new index, replaces the old one, and the replay starts over.
    _write_ced(small_ced, [{"id": "C", "text": "new", "time": BASE, "reposts": []}])
    clock.at(2)
    assert _ids(_run(_connector(small_ced, tmp_path), state, clock)) == ["C"]
    assert [p.name for p in (tmp_path / "idx").iterdir()] != [folders[0].name]
    assert len(list((tmp_path / "idx").iterdir())) == 1


def test_replay_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="speed"):
        get_connector("replay", {"path": "x", "speed": 0})
    with pytest.raises(ConfigError, match="unknown time zone"):
        get_connector("replay", {"path": "x", "timezone": "Mars/Base"})
    not_ced = tmp_path / "x.jsonl"
    not_ced.write_text('{"title": "t"}\n', encoding="utf-8")
    connector = get_connector("replay", {"path": str(not_ced), "index_dir": str(tmp_path / "i")})
    with pytest.raises(ConfigError, match="not a CED cascades file"):
        _run(connector, {}, Clock())


@needs_ced
def test_replay_real_cascades_in_time_order(tmp_path: Path) -> None:
    with gzip.open(CED, "rt", encoding="utf-8") as handle:
        cascades = [json.loads(line) for line in islice(handle, 3)]
    path = _write_ced(tmp_path / "three.jsonl.gz", cascades)
    connector = _connector(path, tmp_path, speed=1e9, batch_max=100_000)
    clock = Clock()
    state: dict[str, Any] = {}
    results = _run(connector, state, clock)  # what is due when the replay starts
    clock.at(10)
    results += _run(connector, state, clock)
    items = [r for r in results if isinstance(r, RawItem)]
    assert len(items) == len(results) == sum(1 + len(c["reposts"]) for c in cascades)
    imported = {i.external_id for i in read_items(path, format="ced")}
    assert {i.external_id for i in items} == imported and len(imported) == len(items)

    def original(item: RawItem) -> datetime:
        value = datetime.fromisoformat(item.extra["original_time"])
        return value if value.tzinfo else value.replace(tzinfo=CHINA_TZ)

    times = [original(i) for i in items]
    assert times == sorted(times)
    # Each source post comes before all of its reposts.
    seen: set[str] = set()
    for item in items:
        if item.kind == "post":
            seen.add(item.external_id or "")
        else:
            assert item.extra["cascade"] in seen
    published = [i.published_at for i in items]
    assert published == sorted(published) and all(p.tzinfo is UTC for p in published)


@needs_ced
@pytest.mark.slow
def test_replay_full_ced_index_builds_fast(tmp_path: Path) -> None:
    connector = _connector(CED, tmp_path)
    started = time.perf_counter()
    first = _run(connector, {}, Clock())
    elapsed = time.perf_counter() - started
    index = replay.get_index(connector.config)
    print(f"CED replay index: {len(index)} items built in {index.build_s:.1f} s")
    assert len(index) == 1_278_567 and index.error_count == 0
    assert _ids(first) and elapsed < 60  # the first run yields posts within seconds
    # The order is chronological: check a spread of positions.
    step = len(index) // 500
    times = []
    for position in range(0, len(index), step):
        item = index.read(position)
        assert isinstance(item, RawItem)
        times.append(index.data_time(item))
    assert times == sorted(times)
    replay.forget_index(index)  # the decompressed copy is 170 MB: do not leave it in /tmp
