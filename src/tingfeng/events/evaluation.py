"""Scoring event grouping on labelled files: reading them, B-cubed, and a run through the grouper.

Event files are JSONL, one item a line: `{"id", "event", "lang", "title", "text", "time"}`;
`event` is the gold group id, or null for an item that belongs to no group (scored as a group
of its own). B-cubed (Bagga & Baldwin 1998) averages, over items, the precision and recall of
the item's predicted group against its gold group.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from tingfeng.events.grouping import EventGrouper, GroupingParams, GroupItem, Key

__all__ = [
    "BCubed",
    "EventFileError",
    "EventRecord",
    "bcubed",
    "evaluate_file",
    "group_records",
    "read_event_file",
]

_REQUIRED = ("id", "event", "title", "text")


class EventFileError(ValueError):
    """An event file that cannot be read: not JSONL, or an item with missing or wrong fields."""


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One labelled item of an event file."""

    id: Key
    event: Hashable | None
    lang: str | None
    title: str
    text: str
    time: datetime | None


class BCubed(NamedTuple):
    precision: float
    recall: float
    f1: float


def read_event_file(path: Path | str) -> list[EventRecord]:
    """All items of an event file, in file order; `EventFileError` names the bad line."""
    path = Path(path)
    records: list[EventRecord] = []
    seen: set[Key] = set()
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise EventFileError(f"{path}: cannot open: {exc.strerror or exc}") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                data = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise EventFileError(f"{where}: not a JSON line ({exc})") from exc
            if not isinstance(data, dict):
                raise EventFileError(f"{where}: expected a JSON object, got {type(data).__name__}")
            missing = [name for name in _REQUIRED if name not in data]
            if missing:
                raise EventFileError(f"{where}: missing field(s) {', '.join(missing)}")
            records.append(_record(data, where))
            if records[-1].id in seen:
                raise EventFileError(f"{where}: duplicate id {records[-1].id!r}")
            seen.add(records[-1].id)
    return records


def _record(data: dict[str, Any], where: str) -> EventRecord:
    key = data["id"]
    if not isinstance(key, (str, int)) or isinstance(key, bool):
        raise EventFileError(f"{where}: id must be a string or an integer")
    event = data["event"]
    if event is not None and not isinstance(event, (str, int)):
        raise EventFileError(f"{where}: event must be a string, an integer or null")
    for name in ("title", "text"):
        if data[name] is not None and not isinstance(data[name], str):
            raise EventFileError(f"{where}: {name} must be a string")
    lang = data.get("lang")
    if lang is not None and not isinstance(lang, str):
        raise EventFileError(f"{where}: lang must be a string or null")
    when = None
    raw = data.get("time")
    if raw is not None:
        try:
            when = datetime.fromisoformat(str(raw))
        except ValueError as exc:
            raise EventFileError(f"{where}: time is not ISO 8601: {raw!r}") from exc
    return EventRecord(key, event, lang, data["title"] or "", data["text"] or "", when)


def bcubed(predicted: Mapping[Key, Hashable], gold: Mapping[Key, Hashable | None]) -> BCubed:
    """B-cubed precision, recall and F1 of `predicted` against `gold` over the gold items.

    An item whose gold group is None is a group of its own. Items missing from `predicted`
    count as singletons, so a grouper that drops items is not rewarded.
    """
    if not gold:
        return BCubed(0.0, 0.0, 0.0)
    # Fresh objects are never equal to a real label: singletons for null gold / missing items.
    gold_of = {key: (g if g is not None else object()) for key, g in gold.items()}
    pred_of = {key: predicted.get(key, object()) for key in gold}
    pair_size = Counter((pred_of[k], gold_of[k]) for k in gold)
    pred_size = Counter(pred_of.values())
    gold_size = Counter(gold_of.values())
    precision = recall = 0.0
    for key in gold:
        both = pair_size[(pred_of[key], gold_of[key])]
        precision += both / pred_size[pred_of[key]]
        recall += both / gold_size[gold_of[key]]
    n = len(gold)
    precision, recall = precision / n, recall / n
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BCubed(precision, recall, f1)


def _in_time_order(records: list[EventRecord]) -> list[EventRecord]:
    """Timed items by time (stable), untimed ones keep their file position among them."""
    if all(r.time is None for r in records) or any(r.time is None for r in records):
        # Mixed or no times: file order is the only order both kinds agree on.
        return list(records)
    return sorted(records, key=lambda r: r.time or datetime.min)


def group_records(
    records: list[EventRecord], params: GroupingParams | None = None, *, warm: bool = True
) -> dict[Key, int]:
    """Event id of each record, fed through `EventGrouper` in time order.

    `warm`: let the grouper learn document frequencies from all texts of the file first (no
    labels), as a running system has learnt them from the posts before; see the docs.
    """
    grouper = EventGrouper(params)
    items = [
        GroupItem(key=r.id, text=r.text, title=r.title, lang=r.lang, time=r.time)
        for r in _in_time_order(records)
    ]
    if warm:
        grouper.observe(items)
    return {item.key: grouper.add(item) for item in items}


def evaluate_file(
    path: Path | str, params: GroupingParams | None = None, *, warm: bool = True
) -> dict[str, Any]:
    """Group a labelled file through `EventGrouper` and score it with B-cubed."""
    records = read_event_file(path)
    started = time.perf_counter()
    predicted = group_records(records, params, warm=warm)
    seconds = time.perf_counter() - started
    gold = {r.id: r.event for r in records}
    score = bcubed(predicted, gold)
    return {
        "file": str(path),
        "precision": round(score.precision, 4),
        "recall": round(score.recall, 4),
        "f1": round(score.f1, 4),
        "items": len(records),
        "gold_events": len({g for g in gold.values() if g is not None}),
        "unlabelled_items": sum(1 for g in gold.values() if g is None),
        "predicted_events": len(set(predicted.values())),
        "seconds": round(seconds, 3),
    }
