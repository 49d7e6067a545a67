"""Replaying a timestamped file as if it were a live stream (demos, load tests, training).

The file (the CED Weibo cascades by default, or any import format with a mapping) is put in
chronological order once, in a compact index cached on disk; then every `collect(ctx)` emits
the items whose replay time has come, so a scheduler calling it every second gives a live
stream. `speed` compresses time (60: one minute of data per wall second) and `max_gap_s` cuts
long quiet stretches short.

Replay time: the first item is due when the replay starts; each next item is due
`min(data gap / speed, max_gap_s)` wall seconds after the previous one. A replayed item gets
its replay time as `published_at` (so it looks live) and keeps the original time in
`extra["original_time"]`; its external id is the original one, so replaying twice, or looping,
never stores a post twice.

The index: CED files are ordered by cascade, not by time, so the first run reads the file once
(3.6-4 s for the 1.27 M items of CED on one core; ~220 MB of memory while sorting), sorts the
(time, line, repost) keys and saves arrays of line numbers and repost positions plus the byte
offset of each line (10 MB for CED); a .gz file is decompressed once into the index folder
(170 MB for CED) so lines can be read by seeking. Other formats are read through the importer
and their items saved, one JSON line each, in the index folder. The folder is keyed by the
file's path, size and mtime: a changed file gets a new index and the replay starts over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import sys
import tempfile
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from itertools import repeat
from pathlib import Path
from typing import IO, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator

from tingfeng.collect.connectors.base import CollectContext, Connector, register
from tingfeng.collect.connectors.imports import (
    CHINA_TZ,
    Format,
    ImportConfig,
    _ced_problem,
    _is_gzip,
    ced_local_time,
    ced_repost_item,
    ced_repost_time,
    ced_source_item,
    iter_file,
    open_binary,
    resolve_path,
)
from tingfeng.collect.errors import CollectError, ConfigError
from tingfeng.collect.items import ItemError, RawItem

log = logging.getLogger(__name__)

INDEX_VERSION = 1
INDEX_FOLDER = "tingfeng-replay-index"
# Errors met while indexing that are shown (once) to the operator; the rest are only counted.
_KEPT_ERRORS = 20
# Parsed cascades kept in memory: a batch of 2,000 CED items spans ~70 cascades (at most ~350).
_CASCADE_CACHE = 256
_LOADED_MAX = 4
_ISO_SECONDS = "%Y-%m-%d %H:%M:%S"


class ReplayConfig(ImportConfig):
    """An import configuration plus the pace of the replay."""

    format: Format = Field("ced", description="File format (default: the CED Weibo cascades).")
    speed: float = Field(60.0, gt=0, description="Data seconds per wall second (60: 1 min/s).")
    max_gap_s: float = Field(
        3.0, ge=0, description="Longest wall pause between two items; longer quiet is cut short."
    )
    batch_max: int = Field(2000, ge=1, le=100_000, description="Items per run at most.")
    loop: bool = Field(
        False, description="Start again at the end (ids repeat: nothing new is stored)."
    )
    max_lag_s: float = Field(
        60.0,
        ge=0,
        description="When the replay is further behind than this (service stopped, runs too "
        "rare), its timeline shifts to resume live instead of bursting; 0 replays the backlog.",
    )
    start_at: datetime | None = Field(
        None,
        description="Data time to begin at, e.g. 2012-09-01 (CED is sparse before 2012-04); "
        "naive times are read in the file's zone.",
    )
    index_dir: str | None = Field(
        None, description=f"Folder for the sorted index (default: <temp>/{INDEX_FOLDER})."
    )
    timezone: str = Field(
        "Asia/Shanghai", description="Zone of naive times in the file, to order them (not CED)."
    )

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use e.g. Asia/Shanghai") from exc
        return value


# --------------------------------------------------------------------------------------------
# The index


def _item_to_json(item: RawItem) -> dict[str, Any]:
    data = dataclasses.asdict(item)
    if item.published_at is not None:
        data["published_at"] = item.published_at.isoformat()
    return {key: value for key, value in data.items() if value not in (None, {}, "")}


def _item_from_json(data: dict[str, Any]) -> RawItem:
    if data.get("published_at"):
        data["published_at"] = datetime.fromisoformat(data["published_at"])
    return RawItem(**data)


@dataclass
class ReplayIndex:
    """The items of a file in chronological order, read one by one from disk."""

    key: str
    folder: Path
    kind: Literal["ced", "items"]
    data_path: Path
    # ced: line number and repost position (-1: the source post); items: byte offset and length.
    first: array[int]
    second: array[int]
    line_starts: array[int]  # ced: byte offset of each line, then the file's length
    platform: str
    zone: tzinfo
    errors: list[list[str]] = field(default_factory=list)  # [where, message]
    error_count: int = 0
    build_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _handle: IO[bytes] | None = field(default=None, repr=False)
    _cascades: OrderedDict[int, tuple[dict[str, Any], datetime | None]] = field(
        default_factory=OrderedDict, repr=False
    )

    def __len__(self) -> int:
        return len(self.first)

    def _read(self, offset: int, length: int) -> bytes:
        if self._handle is None:
            self._handle = self.data_path.open("rb")
        self._handle.seek(offset)
        return self._handle.read(length)

    def read(self, position: int) -> RawItem | ItemError:
        """The item at `position` of the chronological order (a fresh object each time)."""
        with self._lock:
            if self.kind == "items":
                raw = self._read(self.first[position], self.second[position])
                return _item_from_json(json.loads(raw))
            line, index = self.first[position], self.second[position]
            cached = self._cascades.get(line)
            if cached is None:
                start, end = self.line_starts[line], self.line_starts[line + 1]
                record = json.loads(self._read(start, end - start))
                cached = (record, ced_local_time(record))
                self._cascades[line] = cached
                if len(self._cascades) > _CASCADE_CACHE:
                    self._cascades.popitem(last=False)
            else:
                self._cascades.move_to_end(line)
        record, local = cached
        where = f"line {line + 1}" + ("" if index < 0 else f", repost {index}")
        try:
            if index < 0:
                return ced_source_item(record, self.platform)
            return ced_repost_item(
                record["reposts"][index], str(record["id"]), local, self.platform
            )
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, OSError) as exc:
            return ItemError(where, f"unreadable item: {exc}")

    def data_time(self, item: RawItem) -> float:
        """The item's original time as a Unix timestamp (naive times read in the file's zone)."""
        value = item.published_at
        assert value is not None  # items without a time are left out of the index
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.zone)
        return value.timestamp()

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
            self._cascades.clear()


def _index_root(config: ReplayConfig) -> Path:
    if config.index_dir:
        return Path(config.index_dir).expanduser()
    return Path(tempfile.gettempdir()) / INDEX_FOLDER


def index_key(config: ReplayConfig, path: Path) -> str:
    """Names the index of this file as it is now, read with these options."""
    stat = path.stat()
    identity = {
        "version": INDEX_VERSION,
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        **config.model_dump(
            include={
                "format",
                "mapping",
                "preset",
                "platform",
                "kind",
                "encoding",
                "time_format",
                "sheet",
                "delimiter",
                "timezone",
            }
        ),
    }
    blob = json.dumps(identity, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha1(blob).hexdigest()[:20]


def _zone(config: ReplayConfig) -> tzinfo:
    return CHINA_TZ if config.format == "ced" else ZoneInfo(config.timezone)


def _build_ced(source: Path, folder: Path, platform: str) -> dict[str, Any]:
    """Reads the cascades once; returns the arrays and the errors met (see the module doc)."""
    gz = _is_gzip(source)
    data_path = folder / "data.jsonl" if gz else source.resolve()
    keys: list[str] = []
    lines = array("i")
    positions = array("i")
    starts = array("q")
    errors: list[list[str]] = []
    error_count = 0
    offset = 0
    first = True
    with open_binary(source) as handle, data_path.open("wb") if gz else nullcontext() as out:
        for number, line in enumerate(handle):
            starts.append(offset)
            offset += len(line)
            if out is not None:
                out.write(line)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                problem = _ced_problem(record)
            except ValueError as exc:
                record, problem = None, f"invalid JSON: {exc}"
            if problem is not None and first:
                raise ConfigError(
                    f"{source.name} is not a CED cascades file: its first line is {problem}. "
                    "Give the format (jsonl, csv...) and a mapping to replay another file."
                )
            first = False
            if problem is None:
                local = ced_local_time(record)
                if local is None:
                    problem = f"unreadable time {record.get('time')!r}"
            if problem is not None:
                error_count += 1
                if len(errors) < _KEPT_ERRORS:
                    errors.append([f"line {number + 1}", problem])
                continue
            assert local is not None
            source_key = local.strftime(_ISO_SECONDS)
            reposts = record["reposts"]
            try:
                dates = [r["date"] for r in reposts]
                regular = not dates or min(map(len, dates)) == max(map(len, dates)) == 19
            except (TypeError, KeyError):
                dates, regular = [None] * len(reposts), False
            if not regular:
                dates = [_repost_key(r, local, source_key) for r in reposts]
            # A repost dated before its post (2 in CED) would arrive before its parent.
            if dates and min(dates) < source_key:
                dates = [d if d >= source_key else source_key for d in dates]
            keys.append(source_key)
            keys.extend(dates)
            lines.extend(repeat(number, len(dates) + 1))
            positions.extend(range(-1, len(dates)))
    starts.append(offset)
    # Sorting the "YYYY-mm-dd HH:MM:SS" keys (all China local time) sorts by time; sorted() is
    # stable, so a post comes before its reposts of the same second.
    order = sorted(range(len(keys)), key=keys.__getitem__)
    del keys
    return {
        "kind": "ced",
        "data_path": data_path,
        "first": array("i", map(lines.__getitem__, order)),
        "second": array("i", map(positions.__getitem__, order)),
        "line_starts": starts,
        "errors": errors,
        "error_count": error_count,
        "platform": platform,
    }


def _repost_key(repost: Any, local: datetime, fallback: str) -> str:
    """The sort key of an irregular repost date; unreadable ones sort with their post."""
    try:
        return ced_repost_time(str(repost["date"]), local).strftime(_ISO_SECONDS)
    except (ValueError, TypeError, KeyError):
        return fallback


def _build_items(config: ReplayConfig, folder: Path) -> dict[str, Any]:
    """Reads any import format through the importer and saves its items, one JSON line each."""
    data_path = folder / "items.jsonl"
    zone = _zone(config)
    times: list[float] = []
    offsets = array("q")
    lengths = array("i")
    errors: list[list[str]] = []
    error_count = 0
    offset = 0
    record = 0
    with data_path.open("wb") as out:
        for item in iter_file(config):
            record += 1
            problem: list[str] | None = None
            if isinstance(item, ItemError):
                problem = [item.where, item.message]
            elif item.published_at is None:
                name = f"item {item.external_id}" if item.external_id else f"record {record}"
                problem = [name, "it has no time (published_at is not mapped or empty)"]
            if problem is not None:
                error_count += 1
                if len(errors) < _KEPT_ERRORS:
                    errors.append(problem)
                continue
            assert isinstance(item, RawItem) and item.published_at is not None
            value = item.published_at
            if value.tzinfo is None:
                value = value.replace(tzinfo=zone)
            line = json.dumps(_item_to_json(item), ensure_ascii=False, default=str).encode()
            out.write(line + b"\n")
            times.append(value.timestamp())
            offsets.append(offset)
            lengths.append(len(line))
            offset += len(line) + 1
    order = sorted(range(len(times)), key=times.__getitem__)
    return {
        "kind": "items",
        "data_path": data_path,
        "first": array("q", map(offsets.__getitem__, order)),
        "second": array("i", map(lengths.__getitem__, order)),
        "line_starts": array("q"),
        "errors": errors,
        "error_count": error_count,
        "platform": config.platform or "",
    }


_ARRAYS = ("first", "second", "line_starts")
_LOADED: OrderedDict[str, ReplayIndex] = OrderedDict()
_LOADED_LOCK = threading.Lock()
_BUILD_LOCKS: dict[str, threading.Lock] = {}


def _save(built: dict[str, Any], folder: Path, source: Path, build_s: float) -> None:
    for name in _ARRAYS:
        with (folder / f"{name}.bin").open("wb") as out:
            built[name].tofile(out)
    meta = {
        "version": INDEX_VERSION,
        "source": str(source.resolve()),
        "source_size": source.stat().st_size,
        "source_mtime_ns": source.stat().st_mtime_ns,
        "kind": built["kind"],
        "data_path": str(built["data_path"]),
        "typecodes": {name: built[name].typecode for name in _ARRAYS},
        "itemsizes": {name: built[name].itemsize for name in _ARRAYS},
        "counts": {name: len(built[name]) for name in _ARRAYS},
        "byteorder": sys.byteorder,
        "errors": built["errors"],
        "error_count": built["error_count"],
        "platform": built["platform"],
        "build_s": round(build_s, 3),
        "built_at": datetime.now(UTC).isoformat(),
    }
    (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), "utf-8")


def _load(folder: Path, key: str, zone: tzinfo) -> ReplayIndex | None:
    """The saved index in `folder`, or None when it is absent, stale or damaged."""
    try:
        meta = json.loads((folder / "meta.json").read_text("utf-8"))
        if meta["version"] != INDEX_VERSION or meta["byteorder"] != sys.byteorder:
            return None
        arrays: dict[str, array[int]] = {}
        for name in _ARRAYS:
            values = array(meta["typecodes"][name])
            if values.itemsize != meta["itemsizes"][name]:
                return None
            with (folder / f"{name}.bin").open("rb") as handle:
                values.fromfile(handle, meta["counts"][name])
            arrays[name] = values
        data_path = Path(meta["data_path"])
        if not data_path.is_file():
            return None
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None
    return ReplayIndex(
        key=key,
        folder=folder,
        kind=meta["kind"],
        data_path=data_path,
        first=arrays["first"],
        second=arrays["second"],
        line_starts=arrays["line_starts"],
        platform=meta["platform"],
        zone=zone,
        errors=[list(e) for e in meta["errors"]],
        error_count=int(meta["error_count"]),
        build_s=float(meta["build_s"]),
    )


def _remove_older(root: Path, source: Path, keep: str) -> None:
    """Deletes the indexes of older versions of the same file: they can be large."""
    wanted = str(source.resolve())
    stat = source.stat()
    for folder in root.iterdir():
        if folder.name == keep or not folder.is_dir():
            continue
        if folder.name.startswith("."):
            # Left by a build that crashed; one in progress is younger than a day.
            if time.time() - folder.stat().st_mtime > 86400:
                shutil.rmtree(folder, ignore_errors=True)
            continue
        try:
            meta = json.loads((folder / "meta.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if meta.get("source") == wanted and (
            meta.get("source_size"),
            meta.get("source_mtime_ns"),
        ) != (stat.st_size, stat.st_mtime_ns):
            shutil.rmtree(folder, ignore_errors=True)


def get_index(config: ReplayConfig) -> ReplayIndex:
    """The chronological index of the configured file: cached in memory, on disk, or built now."""
    source = resolve_path(config.path)
    key = index_key(config, source)
    with _LOADED_LOCK:
        loaded = _LOADED.get(key)
        if loaded is not None:
            _LOADED.move_to_end(key)
            return loaded
        build_lock = _BUILD_LOCKS.setdefault(key, threading.Lock())
    with build_lock:  # two sources replaying one file build its index once
        with _LOADED_LOCK:
            if key in _LOADED:
                return _LOADED[key]
        root = _index_root(config)
        folder = root / key
        zone = _zone(config)
        index = _load(folder, key, zone)
        if index is None:
            index = _build(config, source, root, folder, key, zone)
        with _LOADED_LOCK:
            _LOADED[key] = index
            while len(_LOADED) > _LOADED_MAX:
                _LOADED.popitem(last=False)[1].close()
    return index


def _build(
    config: ReplayConfig, source: Path, root: Path, folder: Path, key: str, zone: tzinfo
) -> ReplayIndex:
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)  # a damaged or half-written one
        work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    except OSError as exc:
        raise ConfigError(
            f"Cannot write the replay index in {root}: {exc}. Set index_dir to a writable folder."
        ) from exc
    started = time.perf_counter()
    try:
        if config.format == "ced":
            built = _build_ced(source, work, config.platform or "weibo")
        else:
            built = _build_items(config, work)
        if built["data_path"].parent == work:
            built["data_path"] = folder / built["data_path"].name
        build_s = time.perf_counter() - started
        _save(built, work, source, build_s)
        try:
            work.rename(folder)
        except OSError:  # another process finished first: use theirs
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _remove_older(root, source, key)
    log.info(
        "replay index of %s: %d items in %.1f s (%s)",
        source.name,
        len(built["first"]),
        build_s,
        folder,
    )
    index = _load(folder, key, zone)
    if index is None:
        raise CollectError(f"The replay index in {folder} could not be read back; check the disk.")
    return index


def forget_index(index: ReplayIndex) -> None:
    """Drops a damaged index from memory and disk; the next run rebuilds it."""
    with _LOADED_LOCK:
        _LOADED.pop(index.key, None)
    index.close()
    shutil.rmtree(index.folder, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The connector


@register
class ReplayConnector(Connector):
    """Emits a file's items at their (sped-up) time, as if they were being posted now."""

    kind: ClassVar[str] = "replay"
    title: ClassVar[str] = "Replay a data set as a live stream"
    Config: ClassVar[type[BaseModel]] = ReplayConfig
    uses_network: ClassVar[bool] = False

    def __init__(self, config: BaseModel) -> None:
        super().__init__(config)
        # The next item, read but not yet due: kept so a run every second does not re-read it.
        self._peeked: tuple[str, int, RawItem | ItemError] | None = None

    def _peek(self, index: ReplayIndex, position: int) -> RawItem | ItemError:
        if self._peeked is not None and self._peeked[:2] == (index.key, position):
            return self._peeked[2]
        item = index.read(position)
        self._peeked = (index.key, position, item)
        return item

    def _first_time(self, index: ReplayIndex, state: dict[str, Any]) -> float | None:
        """Data time of the first readable item from the current position."""
        for position in range(int(state["position"]), len(index)):
            item = self._peek(index, position)
            if isinstance(item, RawItem):
                return index.data_time(item)
        return None

    def _seek(self, index: ReplayIndex, start: datetime) -> int:
        """The first position at or after data time `start` (binary search: the index is sorted)."""
        target = (start if start.tzinfo else start.replace(tzinfo=index.zone)).timestamp()
        low, high = 0, len(index)
        while low < high:
            middle = (low + high) // 2
            item = index.read(middle)
            # An unreadable item has no time: judge by the next readable one.
            probe = middle
            while isinstance(item, ItemError) and probe + 1 < high:
                probe += 1
                item = index.read(probe)
            if isinstance(item, RawItem) and index.data_time(item) < target:
                low = probe + 1
            else:
                high = middle
        return low

    def collect(self, ctx: CollectContext) -> Iterator[RawItem | ItemError]:
        """The items due by `ctx.now()`, at most `batch_max` (and `ctx.limit`)."""
        config = self.config
        assert isinstance(config, ReplayConfig)
        index = get_index(config)
        try:
            yield from self._collect(ctx, config, index)
        except OSError as exc:
            forget_index(index)
            raise CollectError(
                f"The replay index of {Path(config.path).name} could not be read ({exc}); "
                "it will be rebuilt on the next run."
            ) from exc

    def _collect(
        self, ctx: CollectContext, config: ReplayConfig, index: ReplayIndex
    ) -> Iterator[RawItem | ItemError]:
        state = ctx.state
        now = ctx.now().timestamp()
        if state.get("index") != index.key:
            # First run, or the file changed: start over (the store skips what it holds).
            state.clear()
            state.update(index=index.key, position=0, round=0)
        if len(index) == 0 or (state.get("finished") and not config.loop):
            state["finished"] = True
            return
        state.pop("finished", None)  # loop may have been switched on since
        if "anchor_wall" not in state:
            if config.start_at is not None:
                state["position"] = state["start_position"] = self._seek(index, config.start_at)
            origin = self._first_time(index, state)
            if origin is None:
                state["finished"] = True
                return
            state.update(
                wall_start=datetime.fromtimestamp(now, UTC).isoformat(),
                data_origin=origin,
                anchor_data=origin,
                anchor_wall=now,
            )
        if not state.get("errors_reported"):
            state["errors_reported"] = True
            for where, message in index.errors:
                yield ItemError(where, f"left out of the replay: {message}")
            if index.error_count > len(index.errors):
                yield ItemError(
                    "file", f"{index.error_count} records in all are left out of the replay"
                )
        budget = config.batch_max if ctx.limit is None else min(config.batch_max, ctx.limit)
        shifted = False
        emitted = 0
        while emitted < budget:
            position = int(state["position"])
            if position >= len(index):
                if not config.loop:
                    state["finished"] = True
                    return
                # Next round: a pause of max_gap_s, then the data from its start (or start_at).
                state.update(
                    position=int(state.get("start_position", 0)),
                    round=int(state.get("round", 0)) + 1,
                )
                origin = self._first_time(index, state)
                if origin is None:
                    state["finished"] = True
                    return
                state.update(
                    anchor_data=origin, anchor_wall=state["anchor_wall"] + config.max_gap_s
                )
                continue
            item = self._peek(index, position)
            if isinstance(item, ItemError):
                state["position"] = position + 1
                emitted += 1
                yield item
                continue
            data_time = index.data_time(item)
            step = min(max(data_time - state["anchor_data"], 0.0) / config.speed, config.max_gap_s)
            due = state["anchor_wall"] + step
            if not shifted and config.max_lag_s and now - due > config.max_lag_s:
                # Far behind (the service was stopped): resume live rather than in a burst.
                state["anchor_wall"] += now - due
                due = now
            shifted = True
            if due > now:
                return
            state.update(position=position + 1, anchor_data=data_time, anchor_wall=due)
            self._peeked = None
            original = item.published_at
            assert original is not None
            item.extra["original_time"] = original.isoformat()
            if state.get("round"):
                item.extra["replay_round"] = state["round"]
            item.published_at = datetime.fromtimestamp(due, UTC)
            emitted += 1
            yield item
